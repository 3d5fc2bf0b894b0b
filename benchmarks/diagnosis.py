"""One factor at a time: train model variants for a fixed budget and compare their
validation curves (never the test split).

    python -m benchmarks.diagnosis --dataset=amazon-beauty --data_path=../shared/data/atomic \\
        --budget=15 --jobs=2 base:config_files=properties/model/TIGER-cpu.yaml \\
        no-user:config_files=properties/model/TIGER-cpu.yaml,n_user_tokens=0

Each positional argument is a variant ``NAME[:key=value,...]`` (the throughput tool's syntax;
``model=SASRec`` picks another model, ``config_files=a.yaml+b.yaml`` adds property files).
Every variant trains in its own child process (``OMP_NUM_THREADS`` = ``--threads``) for
``--budget`` minutes of training + validation wall time, is validated every ``eval_step``
epochs and stops there: the test split is not evaluated, so nothing here can be tuned on it.
One row per (variant, budget, seed) merges into ``results/<dataset>-diagnosis.csv``, curves
(valid metrics and training loss against epochs, targets and wall time) into
``.curves.json``; ``.md`` and ``.png`` are redrawn. Invocations running side by side merge
under a file lock, so a sweep can be split over sessions and machines and still make one
table; every row carries its commit, date and machine.
"""
import argparse
import contextlib
import fcntl
import json
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from benchmarks import child_env
from recbole_tiger.atomic_io import open_atomic
from recbole_tiger.benchmark.child_process import run_child_process, stop_children_on_sigterm
from recbole_tiger.benchmark.results_table import (git_commit, machine_description, markdown_grid, merge_curves,
                                                   merge_rows, read_rows, utc_date, write_csv)
from benchmarks.variants import parse_variant

KEY = ("variant", "budget_min", "seed")
COLUMNS = ["variant", "overrides", "best_valid_ndcg@10", "best_valid_recall@10", "best_epoch", "last_valid_ndcg@10",
           "epochs", "budget_min", "train_wall_s", "s_per_epoch", "final_train_loss", "n_params", "seed",
           "commit", "date", "machine"]


# ----------------------------------------------------------------------------- one variant (child)
def run_variant(dataset, budget_min, seed, files, overrides):
    """Train one variant with its validation curve; returns (row, curve)."""
    from recbole.utils import init_logger, init_seed

    from recbole_tiger.config import Config
    from recbole_tiger.quick_start import build_model, build_trainer, prepare_data

    overrides = dict(overrides)
    model_name = overrides.pop("model", "TIGER")
    config = Config(model=model_name, dataset=dataset, config_file_list=files or None,
                    config_dict={**overrides, "seed": seed, "train_time_budget": budget_min,
                                 "show_progress": False})
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    _, train_data, valid_data, _ = prepare_data(config)
    model = build_model(config, train_data)
    trainer = build_trainer(config, model)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    curve = trainer.valid_curve
    best = max(curve, key=lambda p: p["valid_score"]) if curve else {}
    row = {
        "model": model_name,
        "best_valid_ndcg@10": best.get("ndcg@10"),
        "best_valid_recall@10": best.get("recall@10"),
        "best_epoch": best.get("epoch"),
        "last_valid_ndcg@10": curve[-1].get("ndcg@10") if curve else None,
        "epochs": trainer.epochs_done,
        "train_wall_s": round(trainer.fit_seconds, 1),
        "s_per_epoch": round(trainer.train_seconds / max(1, trainer.epochs_done), 1),
        "final_train_loss": curve[-1].get("train_loss") if curve else None,
        "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "checkpoint": trainer.saved_model_file,
        "resume_file": trainer.resume_file,
        "machine": machine_description(config["device"]),
    }
    return row, curve


# ----------------------------------------------------------------------------- results files
@contextlib.contextmanager
def _locked(path):
    """Exclusive lock on ``path + '.lock'`` while results are read, merged and rewritten."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def markdown(rows, dataset):
    lines = [f"## Diagnosis on {dataset}: valid split only, fixed training budget per variant", ""]
    return "\n".join(lines + markdown_grid(COLUMNS, rows)) + "\n"


def plot(curves, png_path, dataset):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_time, by_epoch) = plt.subplots(1, 2, figsize=(13, 5))
    for name, curve in sorted(curves.items()):
        if not curve:
            continue
        ndcg = [p.get("ndcg@10", p["valid_score"]) for p in curve]
        by_time.plot([p["fit_seconds"] / 60 for p in curve], ndcg, marker="o", markersize=3, label=name)
        by_epoch.plot([p["epoch"] for p in curve], ndcg, marker="o", markersize=3, label=name)
    by_time.set_xlabel("training wall time incl. validation (min)")
    by_epoch.set_xlabel("epochs")
    for ax in (by_time, by_epoch):
        ax.set_ylabel("valid NDCG@10")
        ax.grid(alpha=0.3)
    by_epoch.legend(fontsize=7)
    fig.suptitle(f"{dataset}: diagnosis (valid split)")
    fig.tight_layout()
    with open_atomic(png_path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def write_results(results_dir, dataset, new_rows, new_curves):
    base = os.path.join(results_dir, f"{dataset}-diagnosis")
    with _locked(base):
        rows = merge_rows(read_rows(base + ".csv"), new_rows, key_columns=KEY)
        write_csv(base + ".csv", rows)
        curves = merge_curves(base + ".curves.json", new_curves)
        with open_atomic(base + ".md") as f:
            f.write(markdown(rows, dataset))
        plot(curves, base + ".png", dataset)
    return base


def curve_name(row):
    return f"{row['variant']} budget={float(row['budget_min']):g} seed={row['seed']}"


# ----------------------------------------------------------------------------- command line
def run_in_child(spec, args, extra):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        cmd = [sys.executable, "-m", "benchmarks.diagnosis", "--child", f"--child_out={out}",
               f"--dataset={args.dataset}", f"--budget={args.budget}", f"--seed={args.seed}", spec]
        env = child_env(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        run_child_process(cmd + extra, env=env)
        with open(out) as f:
            return json.load(f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="NAME[:key=value,...]")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--budget", type=float, default=15.0, help="training + validation minutes per variant")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--jobs", type=int, default=1, help="variants trained side by side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per variant")
    parser.add_argument("--results_dir", default="results")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child_out", default=None, help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args(argv)

    if args.child:
        name, overrides, files = parse_variant(args.variants[0])
        sys.argv = [sys.argv[0]] + extra  # --key=value pairs reach RecBole's Config
        row, curve = run_variant(args.dataset, args.budget, args.seed, files, overrides)
        row.update({"variant": name, "overrides": " ".join(files + [f"{k}={v}" for k, v in overrides.items()]),
                    "budget_min": args.budget, "seed": args.seed, "commit": git_commit(),
                    "date": utc_date()})
        with open_atomic(args.child_out) as f:
            f.write(json.dumps({"row": row, "curve": curve}))
        return

    for spec in args.variants:
        parse_variant(spec)  # fail on a malformed variant before anything trains

    def one(spec):
        out = run_in_child(spec, args, extra)
        base = write_results(args.results_dir, args.dataset, [out["row"]], {curve_name(out["row"]): out["curve"]})
        r = out["row"]
        print(f"{r['variant']}: best valid NDCG@10 {r['best_valid_ndcg@10']} at epoch {r['best_epoch']} "
              f"of {r['epochs']} ({r['train_wall_s']} s) -> {base}.md", flush=True)

    # stop_children_on_sigterm inside the pool: on `kill <sweep pid>` it stops the children first,
    # so the pool's exit, which waits for its workers, can return
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool, stop_children_on_sigterm():
        for future in [pool.submit(one, spec) for spec in args.variants]:
            future.result()


if __name__ == "__main__":
    main()
