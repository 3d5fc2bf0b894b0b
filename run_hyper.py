"""Hyper-parameter search for TIGER or any RecBole model (RecBole's HyperTuning + hyperopt).

    python run_hyper.py --model=TIGER --dataset=ml-100k --params_file=properties/hyper/TIGER.hyper \
        --config_files=properties/demo/tiger-ml-100k.yaml --algo=random --max_evals=10
"""
import argparse
import sys

from recbole_tiger.hyper import run_hyper

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=str, required=True)
    parser.add_argument("--dataset", type=str, required=True)
    parser.add_argument("--config_files", type=str, default=None, help="space-separated fixed config files")
    parser.add_argument("--params_file", type=str, required=True, help="search space, RecBole's .hyper format")
    parser.add_argument("--output_file", type=str, default=None, help="default: hyper/<model>-<dataset>.result")
    parser.add_argument("--algo", type=str, default="exhaustive", choices=["exhaustive", "random", "bayes"])
    parser.add_argument("--max_evals", type=int, default=100, help="trials for random/bayes")
    parser.add_argument("--early_stop", type=int, default=10, help="stop after N trials without improvement")
    parser.add_argument("--tool", type=str, default="Hyperopt", help="only Hyperopt is supported")
    args, _ = parser.parse_known_args()  # other --key=value pairs reach every trial's Config
    if args.tool != "Hyperopt":
        sys.exit(f"--tool={args.tool}: recbole-tiger runs HyperTuning through Hyperopt only "
                 "(exhaustive, random or bayes via --algo).")
    config_files = args.config_files.strip().split(" ") if args.config_files else []
    run_hyper(
        args.params_file,
        model=args.model,
        dataset=args.dataset,
        config_file_list=config_files,
        algo=args.algo,
        max_evals=args.max_evals,
        early_stop=args.early_stop,
        output_file=args.output_file or f"hyper/{args.model}-{args.dataset}.result",
    )
