"""Choose an inference-time setting of a trained model on the valid split, then test the choice.

    python -m benchmarks.inference_sweep --model_file=saved/TIGER-….pth \\
        --key=popularity_penalty --values=0,0.1,0.2,0.3

Settings that change how a trained TIGER ranks, not what it learned (``popularity_penalty``,
``beam_size``, ``eval_exclude_history``...): every value is evaluated on the **valid** split,
the best by ``valid_metric`` is chosen, and only that one is evaluated on the test split (the
others never see it). Rows — one per value, the chosen one with its test metrics — merge into
``results/<dataset>-inference-sweep.{csv,md}`` (``<dataset>-cold-start-inference-sweep`` under
the cold-start protocol).
"""
import argparse
import os

import yaml

from recbole_tiger.benchmark.results_table import git_commit, machine_description, utc_date, write_table
from recbole_tiger.benchmark.side_by_side import table_name

METRICS = ["recall@10", "ndcg@10", "mrr@10"]
COLUMNS = (["checkpoint", "key", "value", "chosen"] + [f"valid_{m}" for m in METRICS]
           + [f"test_{m}" for m in METRICS] + ["valid_seconds", "commit", "date", "machine"])
KEY = ("checkpoint", "key", "value")


def apply_setting(model, trainer, key, value):
    """Set ``key`` for evaluation: the protocol on the trainer, a ranking setting on the model."""
    if key == "eval_exclude_history":
        trainer.set_protocol("exclude_history" if value else "repeatable")
    elif hasattr(model, "set_ranking"):
        try:
            model.set_ranking(**{key: value})
        except ValueError as err:
            raise SystemExit(f"inference_sweep: {err}")
    else:
        raise SystemExit(f"inference_sweep: {key!r} is not an inference setting of {type(model).__name__}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--values", required=True, help="comma-separated, parsed as YAML")
    parser.add_argument("--results_dir", default="results")
    args = parser.parse_args(argv)
    values = [yaml.safe_load(v) for v in args.values.split(",")]

    import time

    from recbole_tiger.quick_start import load_data_and_model
    from recbole_tiger.trainer import get_trainer

    config, model, _, _, valid_data, test_data = load_data_and_model(args.model_file)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    metric, bigger = config["valid_metric"].lower(), config["valid_metric_bigger"]
    stamp = {"commit": git_commit(), "date": utc_date(), "machine": machine_description(config["device"])}
    rows = []
    for value in values:
        apply_setting(model, trainer, args.key, value)
        start = time.time()
        result = trainer.evaluate(valid_data, load_best_model=False)
        rows.append({"checkpoint": args.model_file, "key": args.key, "value": value, "chosen": "",
                     **{f"valid_{m}": result.get(m) for m in METRICS}, "valid_seconds": round(time.time() - start, 1),
                     "_score": result[metric], **stamp})
        print(f"{args.key}={value}: valid " + ", ".join(f"{m}={result.get(m)}" for m in METRICS), flush=True)
    best = (max if bigger else min)(rows, key=lambda r: r["_score"])
    apply_setting(model, trainer, args.key, best["value"])
    test = trainer.evaluate(test_data, load_best_model=False)
    best.update({"chosen": "yes (best valid)", **{f"test_{m}": test.get(m) for m in METRICS}})
    print(f"chosen on valid: {args.key}={best['value']}; test " + ", ".join(f"{m}={test.get(m)}" for m in METRICS))
    for row in rows:
        row.pop("_score")

    name = table_name(config["dataset"], config["cold_item_ratio"] or 0.0)   # a cold-start split: its own table
    write_table(os.path.join(args.results_dir, f"{name}-inference-sweep"),
                f"## {name}: inference settings chosen on valid, the choice tested (`python -m benchmarks.inference_sweep`)", COLUMNS, rows, KEY)


if __name__ == "__main__":
    main()
