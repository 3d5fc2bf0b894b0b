"""Train and evaluate TIGER or any RecBole model.

    python run_recbole_tiger.py --model=TIGER --dataset=ml-100k --config_files=properties/demo/tiger-ml-100k.yaml
    python run_recbole_tiger.py --model=SASRec --dataset=amazon-beauty --data_path=../shared/data/atomic

Any other --key=value overrides a config key (RecBole semantics).
"""
import argparse
import sys

from recbole_tiger.data import AmazonDataError
from recbole_tiger.quick_start import run_recbole_tiger
from recbole_tiger.utils import UnknownModelError

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", "-m", type=str, default="TIGER", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated config files")
    args, _ = parser.parse_known_args()  # the rest (--key=value) is read by RecBole's Config

    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    try:
        run_recbole_tiger(model=args.model, dataset=args.dataset, config_file_list=config_file_list)
    except (UnknownModelError, AmazonDataError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")  # bad model name, missing dataset or raw files: no traceback
