"""Training throughput of model variants on one dataset: targets per second, time per epoch.

    python -m benchmarks.throughput --dataset=amazon-beauty --data_path=../shared/data/atomic \\
        --steps=20 paper item-tokens:encoder_tokens=item cpu:config_files=properties/model/TIGER-cpu.yaml

Each positional argument is a variant ``NAME[:key=value,key=value,...]`` of config overrides
(values parsed as YAML; ``config_files=a.yaml+b.yaml`` adds property files). The dataset is
loaded once; each variant builds its model with the same seed, runs ``--warmup`` then
``--steps`` optimizer steps (forward, backward, Adam) on the first training batches and
reports training *targets* per second: one target = one (history, next item) pair, so
variants that train several targets per pass (``train_targets: all``) are compared fairly.
Epoch time = training targets of the dataset / targets per second. Rows merge into
``results/<dataset>-throughput.csv`` (keyed by variant) and ``.md``, stamped like the benchmark.
"""
import argparse
import os
import sys
from time import perf_counter

import torch

from recbole_tiger.atomic_io import write_text_atomic
from recbole_tiger.benchmark.results_table import (git_commit, machine_description, markdown_grid, merge_rows,
                                                   read_rows, utc_date, write_csv)
from benchmarks.variants import parse_variant

COLUMNS = ["variant", "overrides", "targets_per_s", "s_per_step", "targets_per_step", "epoch_min", "n_params",
           "threads", "steps", "commit", "date", "machine"]


def count_targets(model, batch):
    """Training targets one calculate_loss call learns from: the model says if it is not one
    per row (TIGER with ``train_targets: all``)."""
    counter = getattr(model, "count_training_targets", None)
    return counter(batch) if counter is not None else len(batch)


def measure(model, batches, warmup, steps, learning_rate):
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    model.train()
    targets, seconds = 0, 0.0
    for i, batch in enumerate(batches[: warmup + steps]):
        start = perf_counter()
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            seconds += perf_counter() - start
            targets += count_targets(model, batch)
    return targets, seconds


def main(argv=None):
    from recbole_tiger import compat  # noqa: F401  (anomaly mode off before any model import)
    from recbole_tiger.config import Config
    from recbole_tiger.quick_start import build_model, prepare_data

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="NAME[:key=value,...]")
    parser.add_argument("--model", default="TIGER")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--results_dir", default="results")
    args, extra = parser.parse_known_args(argv)
    variants = [parse_variant(v) for v in args.variants]

    # Data once, with the first variant's data-relevant settings (batch size, history length).
    sys.argv = [sys.argv[0]] + extra  # --key=value pairs reach every Config, as in RecBole
    config = Config(model=args.model, dataset=args.dataset, config_file_list=variants[0][2] or None,
                    config_dict={**variants[0][1], "show_progress": False})
    _, train_data, _, _ = prepare_data(config)
    torch.manual_seed(0)
    batches = []
    for batch in train_data:
        batches.append(batch.to(config["device"]))
        if len(batches) == args.warmup + args.steps:
            break
    n_targets = len(train_data._dataset)

    rows = []
    for name, overrides, files in variants:
        config = Config(model=args.model, dataset=args.dataset, config_file_list=files or None,
                        config_dict={**overrides, "show_progress": False})
        if config["train_batch_size"] != batches[0].length:
            raise SystemExit(f"throughput: variant {name} has train_batch_size {config['train_batch_size']}, "
                             f"the batches have {batches[0].length}; measure batch sizes in separate runs.")
        model = build_model(config, train_data)
        targets, seconds = measure(model, batches, args.warmup, args.steps, config["learning_rate"])
        row = {
            "variant": name,
            "overrides": " ".join(files + [f"{k}={v}" for k, v in overrides.items()]),
            "targets_per_s": round(targets / seconds, 1),
            "s_per_step": round(seconds / args.steps, 3),
            "targets_per_step": round(targets / args.steps, 1),
            "epoch_min": round(n_targets / (targets / seconds) / 60, 2),
            "n_params": sum(p.numel() for p in model.parameters()),
            "threads": torch.get_num_threads(),
            "steps": args.steps,
            "commit": git_commit(),
            "date": utc_date(),
            "machine": machine_description(config["device"]),
        }
        print(" | ".join(f"{k}={row[k]}" for k in COLUMNS[:7]), flush=True)
        rows.append(row)

    os.makedirs(args.results_dir, exist_ok=True)
    base = os.path.join(args.results_dir, f"{args.dataset}-throughput")
    all_rows = merge_rows(read_rows(base + ".csv"), rows, key_columns=("variant",))
    write_csv(base + ".csv", all_rows)
    lines = [f"## Training throughput on {args.dataset} ({n_targets} training targets per epoch)", ""]
    lines += markdown_grid(COLUMNS, all_rows)
    write_text_atomic(base + ".md", "\n".join(lines) + "\n")
    print(f"results in {base}.{{md,csv}}")


if __name__ == "__main__":
    main()
