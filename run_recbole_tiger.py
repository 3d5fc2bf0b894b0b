"""Train and evaluate TIGER or any RecBole model.

    python run_recbole_tiger.py --model=TIGER --dataset=ml-100k --config_files=properties/demo/tiger-ml-100k.yaml
    python run_recbole_tiger.py --model=SASRec --dataset=amazon-beauty --data_path=../shared/data/atomic
    python run_recbole_tiger.py --model=TIGER --dataset=ml-100k --nproc=2     # distributed (RecBole's flags)

Any other --key=value overrides a config key (RecBole semantics).
"""
import argparse
import sys

from recbole_tiger.data import AmazonDataError
from recbole_tiger.quick_start import run
from recbole_tiger.utils import UnknownModelError

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", "-m", type=str, default="TIGER", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated config files")
    # RecBole's distributed-training flags (its run_recbole.py): processes here, over all machines,
    # rendezvous address, and the first rank of this machine
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all machines (default: nproc)")
    parser.add_argument("--ip", type=str, default="localhost", help="rank 0's address")
    parser.add_argument("--port", type=str, default="5678", help="rank 0's port")
    parser.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process")
    args, _ = parser.parse_known_args()  # the rest (--key=value) is read by RecBole's Config

    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    try:
        run(model=args.model, dataset=args.dataset, config_file_list=config_file_list, nproc=args.nproc,
            world_size=args.world_size, ip=args.ip, port=args.port, group_offset=args.group_offset)
    except (UnknownModelError, AmazonDataError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")  # bad model name, missing dataset or raw files: no traceback
