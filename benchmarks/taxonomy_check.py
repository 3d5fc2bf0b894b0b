"""Does TIGER learn what the item text gives it? Pop, SASRec and TIGER variants on the synthetic
taxonomy catalogue (``recbole_tiger.data.synthetic``), for a fixed number of epochs each.

    python -m benchmarks.taxonomy_check --n_users=1000 --epochs=12 \\
        preset old-recipe:n_user_tokens=2000,train_targets=all,dropout_prob=0.1

Positional arguments are TIGER variants ``NAME[:key=value,...]`` on top of
``properties/model/TIGER-cpu.yaml`` (``preset`` = the file as shipped). Prints test NDCG@10 per
model next to the taxonomy ranker's (the best one can do) and writes
``results/taxonomy-check.{md,csv}`` (rows keyed by model, variant, users, epochs; stamped with
commit, date and machine). ``tests/test_quality_guard.py`` runs the ``preset`` row at its own
settings as a regression guard.
"""
import argparse
import os
import tempfile

from recbole_tiger.atomic_io import open_atomic
from recbole_tiger.benchmark.results_table import (git_commit, machine_description, markdown_grid, merge_rows,
                                                   read_rows, utc_date, write_csv)
from recbole_tiger.config import PROPERTIES_DIR
from recbole_tiger.data.synthetic import oracle_ndcg, write_taxonomy_dataset
from benchmarks.variants import parse_variant

COMMON = {
    "state": "WARNING", "show_progress": False, "user_inter_num_interval": "[0,inf)",
    "item_inter_num_interval": "[0,inf)", "MAX_ITEM_LIST_LENGTH": 20, "stopping_step": 100,
    "eval_batch_size": 1024, "eval_step": 4,
}
# 288 items: a 3 x 16-code ID (+ collision code) fits the catalogue like 3 x 256 fits Beauty's 12k
TIGER_SIDS = {"sid_n_levels": 3, "sid_codebook_size": 16, "beam_check_users": 0}
COLUMNS = ["model", "variant", "overrides", "test_ndcg@10", "valid_ndcg@10", "share_of_sasrec", "times_pop",
           "taxonomy_ranker_ndcg@10", "n_users", "epochs", "seconds", "commit", "date", "machine"]


def make_dataset(root, n_users, seed=0):
    """Write the catalogue under ``root``; returns (data_path, taxonomy ranker's test NDCG@10)."""
    sequences, catalogue = write_taxonomy_dataset(root, n_users=n_users, seed=seed)
    return root, oracle_ndcg(catalogue, sequences)


def run_model(model, data_path, epochs, files=(), overrides=None, checkpoint_dir=None):
    """Train and test one model on the taxonomy dataset; returns RecBole's result dict."""
    from recbole_tiger.quick_start import run_recbole_tiger

    config = {**COMMON, "data_path": data_path, "checkpoint_dir": checkpoint_dir or os.path.join(data_path, "saved"),
              "epochs": 1 if model == "Pop" else epochs, **(overrides or {})}
    return run_recbole_tiger(model, "taxonomy", config_file_list=list(files) or None, config_dict=config)


def tiger_files():
    return [os.path.join(PROPERTIES_DIR, "model", "TIGER-cpu.yaml")]


def main(argv=None):
    from time import time

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", default=["preset"], help="TIGER variants NAME[:key=value,...]")
    parser.add_argument("--n_users", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic catalogue")
    parser.add_argument("--results_dir", default="results")
    args = parser.parse_args(argv)
    variants = [parse_variant(v) for v in args.variants]

    with tempfile.TemporaryDirectory() as tmp:
        data_path, oracle = make_dataset(os.path.join(tmp, "atomic"), args.n_users, args.seed)
        runs = [("Pop", "", {}, []), ("SASRec", "", {}, [])]
        runs += [("TIGER", name, overrides, files) for name, overrides, files in variants]
        rows, scores = [], {}
        for model, variant, overrides, files in runs:
            start = time()
            extra = {**TIGER_SIDS, **overrides} if model == "TIGER" else overrides
            result = run_model(model, data_path, args.epochs, (tiger_files() if model == "TIGER" else []) + files, extra)
            scores[(model, variant)] = ndcg = result["test_result"]["ndcg@10"]
            rows.append({
                "model": model, "variant": variant,
                "overrides": " ".join(files + [f"{k}={v}" for k, v in overrides.items()]),
                "test_ndcg@10": ndcg, "valid_ndcg@10": (result["best_valid_result"] or {}).get("ndcg@10"),
                "taxonomy_ranker_ndcg@10": round(oracle, 4), "n_users": args.n_users,
                "epochs": result["epochs"], "seconds": round(time() - start, 1), "commit": git_commit(),
                "date": utc_date(),
                "machine": machine_description(result["config"]["device"]),
            })
            print(f"{model} {variant}: test NDCG@10 {ndcg:.4f} ({rows[-1]['seconds']} s)", flush=True)
    for row in rows:
        row["share_of_sasrec"] = round(row["test_ndcg@10"] / max(scores[("SASRec", "")], 1e-9), 3)
        row["times_pop"] = round(row["test_ndcg@10"] / max(scores[("Pop", "")], 1e-9), 1)
    base = os.path.join(args.results_dir, "taxonomy-check")
    all_rows = merge_rows(read_rows(base + ".csv"), rows, key_columns=("model", "variant", "n_users", "epochs"))
    write_csv(base + ".csv", all_rows)
    lines = ["## TIGER on the synthetic taxonomy catalogue (test split; item text spells out the structure)", ""]
    lines += markdown_grid(COLUMNS, all_rows)
    with open_atomic(base + ".md") as f:
        f.write("\n".join(lines) + "\n")
    print(f"taxonomy ranker {oracle:.4f}; results in {base}.{{md,csv}}")


if __name__ == "__main__":
    main()
