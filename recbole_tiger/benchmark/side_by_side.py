"""Side-by-side benchmark: several models, one split, one time budget, one table.

Each (model, seed) runs in its own child process (clean memory peak, no state shared
between models) and returns one result row. Rows merge into ``results/<dataset>.csv``
keyed by (model, seed, budget), so a benchmark too long for one sitting can run one model
per invocation and still end up in one table; every row carries its commit, date and
machine. ``results/<dataset>.md`` and ``.png`` are regenerated from the csv each time.
"""
import argparse
import csv
import json
import os
import resource
import statistics
import sys
import tempfile

from recbole_tiger.atomic_io import open_atomic, write_text_atomic
from recbole_tiger.benchmark.child_process import run_child_process
from recbole_tiger.benchmark.results_table import (git_commit, machine_description, merge_curves, merge_rows,
                                                   read_rows, utc_date, write_csv)
from recbole_tiger.settings import setting
from recbole_tiger.trainer.history_exclusion import PROTOCOLS

METRICS = ["recall@5", "recall@10", "ndcg@5", "ndcg@10", "mrr@10"]
# over the test targets that are cold items (trainer/cold_start.py); absent where a split has none
COLD_METRICS = ["cold_recall@10", "cold_ndcg@10", "cold_targets"]
KEY = ("model", "preset", "variant", "seed", "budget_min", "protocol", "mode")
DEFAULT_PROTOCOL = "repeatable"  # rows written before the protocol column had only this one
DEFAULT_MODE = "budget"          # rows written before the mode column: a fixed time budget
# TIGER's property file per preset; "auto" = cpu preset unless CUDA is available.
TIGER_PRESETS = {"paper": None, "cpu": os.path.join("model", "TIGER-cpu.yaml")}  # under PROPERTIES_DIR
# Hyper-parameters worth showing next to a model's numbers, when the config has them.
KEY_HYPERPARAMETERS = [
    "learning_rate", "train_batch_size", "hidden_size", "d_model", "n_layers", "n_encoder_layers",
    "n_decoder_layers", "n_heads", "d_head", "d_ff", "hidden_dropout_prob", "dropout_prob", "mask_ratio",
    "encoder_tokens", "train_targets", "backbone", "n_user_tokens", "weight_decay", "lr_scheduler", "warmup_steps",
    "sid_quantizer", "sid_n_levels", "code_temperature", "beam_size", "eval_step", "MAX_ITEM_LIST_LENGTH",
]
LOSS_TYPES = {"TIGER": "CE over semantic-ID tokens", "RPG": "CE over parallel semantic-ID codes"}  # no loss_type key
# Numbers published elsewhere (never measured here), per dataset: source, protocol, test metrics.
PUBLISHED_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "published.csv")


def published(dataset, path=PUBLISHED_FILE):
    """The rows of ``published.csv`` for ``dataset`` (metrics as floats, None where not published)."""
    with open(path, newline="") as f:
        return [{k: (float(v) if k.startswith("test_") and v else None if k.startswith("test_") else v)
                 for k, v in row.items()} for row in csv.DictReader(f) if row["dataset"] == dataset]


# ----------------------------------------------------------------------------- one run
def resolve_preset(model, preset):
    """(preset name, property files) for one model: only TIGER has presets."""
    if model != "TIGER":
        return "", []
    if preset == "auto":
        import torch

        preset = "paper" if torch.cuda.is_available() else "cpu"
    if preset not in TIGER_PRESETS:
        raise SystemExit(f"benchmark: --tiger_preset={preset!r}, expected auto or one of {sorted(TIGER_PRESETS)}")
    path = TIGER_PRESETS[preset]
    from recbole_tiger.config import PROPERTIES_DIR

    return preset, [os.path.join(PROPERTIES_DIR, path)] if path else []


def default_history_length(dataset):
    """One history length for every model of a benchmark: MAX_ITEM_LIST_LENGTH as TIGER's config
    layers resolve it (the dataset's property file over TIGER's; RecBole's own default, 50,
    would otherwise give the baselines longer histories than TIGER)."""
    from recbole_tiger.config import Config

    saved_argv = sys.argv
    try:
        sys.argv = sys.argv[:1]  # the property files' value; --MAX_ITEM_LIST_LENGTH is applied by the caller
        return int(Config(model="TIGER", dataset=dataset)["MAX_ITEM_LIST_LENGTH"])
    finally:
        sys.argv = saved_argv


def table_name(dataset, cold_item_ratio=0.0):
    """results/<name>.csv of a benchmark: the cold-start protocol changes the data, so its runs
    make a table of their own."""
    return f"{dataset}-cold-start" if cold_item_ratio else dataset


def run_mode(options):
    """The ``mode`` column: ``budget`` (train until the time budget) or ``converge`` (until valid
    stops improving for ``patience`` validations; the budget is then a safety cap)."""
    return f"converge (patience {options['patience']})" if options.get("patience") else DEFAULT_MODE


def run_one(model, dataset, seed, budget_min, config_files, preset="", variant="", overrides="",
            history_length=None, protocols=(DEFAULT_PROTOCOL,), cold_item_ratio=0.0, options=None):
    """Train/evaluate one model in this process; one result row (a flat dict) per test protocol.
    The model is trained and chosen on valid under the first protocol. ``options``: ``patience``
    (converge mode: RecBole's ``stopping_step``), ``piece`` (minutes of this invocation:
    ``train_session_limit``), ``resume_from``. A paused run returns no rows and its resume file."""
    from recbole_tiger.quick_start import run_recbole_tiger

    commit = git_commit()  # the code that trains is the code at the start; HEAD may move during a long run
    config_dict = {"seed": seed, "train_time_budget": budget_min, "show_progress": False,
                   "MAX_ITEM_LIST_LENGTH": history_length or default_history_length(dataset),
                   "eval_exclude_history": protocols[0] == "exclude_history", "cold_item_ratio": cold_item_ratio}
    options = options or {}
    if options.get("patience"):
        config_dict["stopping_step"] = int(options["patience"])
    if options.get("piece"):
        config_dict["train_session_limit"] = float(options["piece"])
    if options.get("resume_from"):
        config_dict["resume_from"] = options["resume_from"]
    result = run_recbole_tiger(model=model, dataset=dataset, config_file_list=config_files or None,
                               config_dict=config_dict, test_protocols=protocols)
    config = result["config"]
    if result["paused"]:
        return [], result["valid_curve"], {"resume_file": result["resume_file"], "epochs": result["epochs"],
                                           "fit_seconds": round(result["fit_seconds"], 1), "commit": commit,
                                           "date": utc_date(), "machine": machine_description(config["device"])}
    row = {
        "model": model, "preset": preset, "variant": variant, "seed": seed, "budget_min": budget_min, "dataset": dataset,
        "protocol": result["protocol"], "selected_under": result["protocol"], "mode": run_mode(options),
        **{f"test_{m}": result["test_result"].get(m) for m in METRICS + COLD_METRICS},
        **{f"valid_{m}": (result["best_valid_result"] or {}).get(m) for m in METRICS},
        "cold_item_ratio": cold_item_ratio, "cold_item_seed": config["cold_item_seed"],
        "epochs": result["epochs"],
        "stopped_by": result["stopped_by"],
        "pieces": int(options.get("pieces_before", 0)) + 1,
        "train_wall_s": round(result["fit_seconds"], 1),
        "eval_wall_s": round(result["test_seconds"], 1),
        "peak_mem_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "n_params": result["n_params"],
        **{f"beam_{k}": v for k, v in (result.get("beam_check") or {}).items()},
        "loss_type": config["loss_type"] or LOSS_TYPES.get(model, "none"),
        "history_length": config["MAX_ITEM_LIST_LENGTH"],
        "hyperparameters": "; ".join(f"{k}={config[k]}" for k in KEY_HYPERPARAMETERS if config[k] is not None),
        "commit": commit,
        "date": utc_date(),
        "machine": machine_description(config["device"]),
        "config_files": " ".join(config_files or []),
        "overrides": overrides,
        "checkpoint": result["saved_model_file"],
        "resume_file": result["resume_file"],
        "resumed_from": setting(config, "resume_from", ""),
    }
    rows = [row] + [protocol_row(row, protocol, result["test_results"][protocol])
                    for protocol in protocols if protocol != result["protocol"]]
    return rows, result["valid_curve"], None


def protocol_row(row, protocol, test_result):
    """``row`` (one trained checkpoint) with the test metrics of another evaluation protocol."""
    return {**row, "protocol": protocol, **{f"test_{m}": test_result.get(m) for m in METRICS + COLD_METRICS}}


def run_in_child(model, dataset, seed, budget_min, config_files, extra_args, preset="", variant="",
                 history_length=None, protocols=(DEFAULT_PROTOCOL,), cold_item_ratio=0.0, options=None):
    """Run one model in a child process; extra --key=value args reach its Config."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "row.json")
        cmd = [sys.executable, "-m", "recbole_tiger.benchmark.side_by_side", "--child", f"--model={model}",
               f"--dataset={dataset}", f"--seeds={seed}", f"--budget={budget_min}", f"--child_out={out}",
               f"--tiger_preset={preset or 'paper'}", f"--variant={variant}", "--protocols=" + ",".join(protocols),
               f"--cold_item_ratio={cold_item_ratio}", "--run_options=" + json.dumps(options or {})]
        if history_length:
            cmd.append(f"--history_length={history_length}")
        if config_files:
            cmd.append("--config_files=" + " ".join(config_files))
        run_child_process(cmd + extra_args)
        with open(out) as f:
            return json.load(f)


# ----------------------------------------------------------------------------- results files
def _mean_std(values):
    values = [float(v) for v in values if v not in (None, "")]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def markdown_table(rows, dataset):
    """Measured rows (mean ± std over seeds per model and budget), then the reference block."""
    groups = {}
    for r in rows:
        label = r["model"] + (f" ({r['preset']} preset)" if r.get("preset") else "") + (
            f" [{r['variant']}]" if r.get("variant") else "") + (
            f", {r['mode']}" if (r.get("mode") or DEFAULT_MODE) != DEFAULT_MODE else "")
        groups.setdefault((label, str(r["budget_min"]), r.get("protocol") or DEFAULT_PROTOCOL), []).append(r)
    cold = [m for m in COLD_METRICS if any(r.get(f"test_{m}") not in (None, "") for r in rows)]
    head = ["model", "budget (min)", "protocol", "seeds"] + [f"test {m}" for m in METRICS + cold] + [
        "valid ndcg@10", "beam ≠ exact top-10 (users)", "epochs", "train wall (s)", "eval wall (s)", "peak mem (MB)", "params", "loss",
        "hyper-parameters", "commit", "date", "machine"]
    lines = [f"## Measured on {dataset} (test split unless marked valid)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, budget, protocol), group in groups.items():
        last = group[-1]
        cells = [model, budget, protocol, str(len(group))] + [_mean_std(r.get(f"test_{m}") for r in group)
                                                               for m in METRICS + cold] + [
            _mean_std(r["valid_ndcg@10"] for r in group),
            "/".join(f"{float(r['beam_differ@10']):.3f} ({r['beam_n_users']})" for r in group
                     if r.get("beam_differ@10") not in (None, "")) or "n/a",
            "/".join(str(r["epochs"]) for r in group),
            "/".join(str(r["train_wall_s"]) for r in group),
            "/".join(str(r["eval_wall_s"]) for r in group),
            "/".join(str(r["peak_mem_mb"]) for r in group),
            str(last["n_params"]), last["loss_type"], last["hyperparameters"],
            ", ".join(sorted({r["commit"] for r in group})), ", ".join(sorted({r["date"][:10] for r in group})),
            last["machine"]]
        lines.append("| " + " | ".join(cells) + " |")
    lengths = sorted({str(r.get("history_length") or "?") for r in rows})
    lines[1:1] = ["", f"History length (MAX_ITEM_LIST_LENGTH) of the measured rows: {', '.join(lengths)}. Protocol: "
                  "repeatable = RecBole's default (a user's history items are ranked like any other item); "
                  "exclude_history = they are never ranked (eval_exclude_history). Every model is chosen on valid "
                  "under the repeatable protocol unless its row says otherwise (selected_under in the csv)."]
    ratios = sorted({str(r.get("cold_item_ratio")) for r in rows if r.get("cold_item_ratio") not in (None, "", "0", "0.0")})
    if ratios:
        lines[1:1] = ["", f"Cold-start protocol (cold_item_ratio {', '.join(ratios)}): that fraction of the distinct "
                      "test items is removed from every training and validation sequence; test cold_* metrics average "
                      "over the test targets that are such items (cold_targets of them)."]
    references = published(dataset)
    if not references:
        return "\n".join(lines) + "\n"
    metrics = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
    lines += ["", "## Reference only: published numbers, not measured here", "",
              f"Published numbers on {dataset}, test split. They come from a different training setup (not RecBole, "
              "not this budget), so they are not comparable row-for-row with the measured table above.", "",
              "| model | source | protocol | " + " | ".join(metrics) + " |", "|---|---|---|" + "---|" * len(metrics)]
    for ref in references:
        lines.append(f"| {ref['model']} (published) | {ref['source']} | {ref['protocol']} | "
                     + " | ".join(f"{ref['test_' + m]:.4f}" if ref["test_" + m] is not None else "—" for m in metrics) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(curves, png_path, dataset):
    """Validation NDCG@10 against wall time of training (incl. validation), one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # A results table collects many runs: the legend goes beside the axes (inside, it hid the
    # curves), and after every 10 runs the colours repeat with another line style.
    runs = [(name, curve) for name, curve in sorted(curves.items()) if curve]
    fig, ax = plt.subplots(figsize=(13, max(4.5, 0.22 * len(runs) + 1)))
    for i, (name, curve) in enumerate(runs):
        ax.plot([p["fit_seconds"] / 60 for p in curve], [p.get("ndcg@10", p["valid_score"]) for p in curve],
                marker="o", markersize=3, label=name, linestyle=("-", "--", ":", "-.")[i // 10 % 4])
    ax.set_xlabel("training wall time incl. validation (min)")
    ax.set_ylabel("valid NDCG@10")
    ax.set_title(f"{dataset}: who learns faster")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    with open_atomic(png_path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def write_results(results_dir, dataset, new_rows, new_curves, name=None):
    """Merge rows into <name>.csv (default: the dataset's), curves into <name>.curves.json; redraw .md and .png."""
    os.makedirs(results_dir, exist_ok=True)
    base = os.path.join(results_dir, name or dataset)
    old_rows = read_rows(base + ".csv")
    for row in old_rows + list(new_rows):  # rows written before the protocol / mode columns had one of each
        row["protocol"] = row.get("protocol") or DEFAULT_PROTOCOL
        row["mode"] = row.get("mode") or DEFAULT_MODE
    rows = merge_rows(old_rows, new_rows, KEY)
    write_csv(base + ".csv", rows)
    curves = merge_curves(base + ".curves.json", new_curves)
    write_text_atomic(base + ".md", markdown_table(rows, dataset if name in (None, dataset) else name))
    plot_curves(curves, base + ".png", dataset)
    return rows


# ----------------------------------------------------------------------------- command line
def parse_ranking(text):
    """``"key=value,key=value"`` -> {key: value} (values as YAML reads them)."""
    import yaml

    changes = {}
    for part in filter(None, (text or "").split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"benchmark: --ranking: {part!r}, expected key=value[,key=value...]")
        changes[key.strip()] = yaml.safe_load(value)
    return changes


def retest(results_dir, dataset, checkpoints, protocols, table=None, ranking=None, variant=""):
    """Test checkpoints of runs already in ``results_dir``'s table under ``protocols``; each new
    row copies its run's row (training time, valid metrics, provenance) with the new test
    metrics and protocol, and says when and with which commit it was tested. ``ranking``
    ({key: value}, the model's ``set_ranking`` settings) ranks differently: the rows then get
    ``variant``, the settings in their overrides, and valid metrics measured with them too."""
    from recbole_tiger.quick_start import build_trainer, load_data_and_model

    if ranking and not variant:
        raise SystemExit("benchmark --retest --ranking: name the rows with --variant (they would replace "
                         "the trained run's rows)")
    base = os.path.join(results_dir, table or dataset)
    rows = read_rows(base + ".csv")
    new_rows = []
    for checkpoint in checkpoints:
        trained = [r for r in rows if os.path.abspath(r.get("checkpoint") or "") == os.path.abspath(checkpoint)
                   and (r.get("protocol") or DEFAULT_PROTOCOL) == (r.get("selected_under") or DEFAULT_PROTOCOL)]
        if not trained:
            raise SystemExit(f"benchmark --retest: no row of {base}.csv has checkpoint {checkpoint}")
        row = dict(trained[-1])
        config, model, _, _, valid_data, test_data = load_data_and_model(checkpoint)
        config["resume_from"] = None
        trainer = build_trainer(config, model)
        if ranking:
            if not hasattr(model, "set_ranking"):
                raise SystemExit(f"benchmark --retest --ranking: {type(model).__name__} has no ranking settings")
            try:
                model.set_ranking(**ranking)
            except ValueError as err:
                raise SystemExit(f"benchmark --retest --ranking: {err}")
            trainer.set_protocol(row.get("selected_under") or DEFAULT_PROTOCOL)
            valid = trainer.evaluate(valid_data, load_best_model=False)
            settings = " ".join(f"--{k}={v}" for k, v in ranking.items())
            row.update({"variant": variant, "overrides": f"{row.get('overrides') or ''} {settings}".strip(),
                        **{f"valid_{m}": valid.get(m) for m in METRICS}})
            print(f"{checkpoint} (valid, {settings}): " + ", ".join(f"{m}={valid.get(m)}" for m in METRICS))
        for protocol in protocols:
            trainer.set_protocol(protocol)
            result = trainer.evaluate(test_data, load_best_model=not ranking, model_file=checkpoint)
            new_rows.append({**protocol_row(row, protocol, result),
                             "selected_under": row.get("selected_under") or DEFAULT_PROTOCOL,
                             "retested": f"{utc_date()} at {git_commit()}"})
            print(f"{checkpoint} ({protocol}): " + ", ".join(f"{m}={result.get(m)}" for m in METRICS))
    write_results(results_dir, dataset, new_rows, {}, table)
    return new_rows


class Progress:
    """``<table>.progress.json``: the runs paused by ``--piece`` (their resume files, pieces so far,
    stamps), so that the same command continues each where it stopped."""

    def __init__(self, path):
        self.path = path

    def _read(self):
        if not os.path.isfile(self.path):
            return {}
        with open(self.path, encoding="utf-8") as f:
            return json.load(f)

    def _write(self, runs):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        write_text_atomic(self.path, json.dumps(runs, indent=1, sort_keys=True) + "\n")

    def resume_options(self, run_key):
        run = self._read().get(run_key)
        if run is None:
            return {}
        if not os.path.isfile(run["resume_file"]):
            raise SystemExit(f"benchmark: {self.path} says {run_key!r} paused with {run['resume_file']}, which does "
                             "not exist here; restore it, or remove the entry to start that run over.")
        return {"resume_from": run["resume_file"], "pieces_before": len(run["pieces"])}

    def paused(self, run_key, piece):
        runs = self._read()
        entry = runs.setdefault(run_key, {"pieces": []})
        entry["resume_file"] = piece["resume_file"]
        entry["pieces"].append({k: piece[k] for k in ("epochs", "fit_seconds", "commit", "date", "machine")})
        self._write(runs)

    def finished(self, run_key):
        runs = self._read()
        if runs.pop(run_key, None) is not None:
            self._write(runs)


def parse_seeds(text):
    """'3' -> [2020, 2021, 2022]; '2021,2023' -> [2021, 2023]; '2021,' -> [2021] (a single explicit seed)."""
    if "," in text:
        return [int(s) for s in text.split(",") if s.strip()]
    return [2020 + i for i in range(int(text))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--models", "--model", default="TIGER,SASRec,BERT4Rec")
    parser.add_argument("--budget", type=float, default=60.0, help="train_time_budget per model, minutes")
    parser.add_argument("--seeds", default="1", help="N (seeds 2020..2020+N-1) or an explicit list a,b,c "
                        "(one seed: a,)")
    parser.add_argument("--config_files", default=None, help="space-separated config files for every model")
    parser.add_argument("--results_dir", default="results")
    parser.add_argument("--history_length", type=int, default=None,
                        help="MAX_ITEM_LIST_LENGTH for every model (default: the dataset's property file, else "
                             "TIGER's 20); --MAX_ITEM_LIST_LENGTH=N on the command line overrides it for all")
    parser.add_argument("--variant", default="",
                        help="a label for runs that differ by --key=value overrides (part of the row key and name)")
    parser.add_argument("--tiger_preset", default="auto",
                        help="TIGER settings: cpu (properties/model/TIGER-cpu.yaml), paper (TIGER.yaml only), "
                             "auto = cpu unless CUDA is available")
    parser.add_argument("--merge_from", default=None,
                        help="comma-separated results dirs whose <dataset>.csv/.curves.json rows merge into "
                             "--results_dir (runs made in other sessions or on other machines); runs nothing")
    parser.add_argument("--protocols", default=DEFAULT_PROTOCOL,
                        help="evaluation protocols to test each run under, comma-separated: repeatable (RecBole's "
                             "default: history items are ranked) and/or exclude_history (never ranked); the first "
                             "one is also used on valid, for model selection")
    parser.add_argument("--retest", default=None,
                        help="comma-separated checkpoints of runs already in the results table: test them under "
                             "--protocols and add those rows (no training)")
    parser.add_argument("--ranking", default=None,
                        help="with --retest: ranking settings of the model (set_ranking), key=value[,key=value]; "
                             "the rows need --variant and get valid metrics measured with them")
    parser.add_argument("--cold_item_ratio", type=float, default=0.0,
                        help="the cold-start protocol for every model (cold_item_ratio, docs/evaluation-protocols.md): "
                             "its runs go to results/<dataset>-cold-start.csv")
    parser.add_argument("--converge", action="store_true",
                        help="train each model until valid NDCG@10 has not improved for --patience validations "
                             "(--budget is then the safety cap on its total time); rows get mode 'converge'")
    parser.add_argument("--patience", type=int, default=10, help="--converge: validations without improvement")
    parser.add_argument("--piece", type=float, default=None,
                        help="minutes of training per invocation (train_session_limit): a longer run pauses with a "
                             "resume file, and the same command continues it (progress in <table>.progress.json)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child_out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--run_options", default="{}", help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args(argv)
    table = table_name(args.dataset, args.cold_item_ratio)
    config_files = args.config_files.split() if args.config_files else []
    protocols = tuple(args.protocols.split(","))
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise SystemExit(f"benchmark: --protocols: {protocol!r}, expected some of {sorted(PROTOCOLS)}")

    if args.child:  # one model, one seed, in this process
        preset, preset_files = resolve_preset(args.models, args.tiger_preset)
        rows, curve, paused = run_one(args.models, args.dataset, int(args.seeds), args.budget,
                                      preset_files + config_files, preset, args.variant, " ".join(extra),
                                      args.history_length, protocols, args.cold_item_ratio, json.loads(args.run_options))
        write_text_atomic(args.child_out, json.dumps({"rows": rows, "curve": curve, "paused": paused}))
        return

    if args.retest:
        rows = retest(args.results_dir, args.dataset, args.retest.split(","), protocols, table,
                      parse_ranking(args.ranking), args.variant)
        print(f"{len(rows)} rows added to {os.path.join(args.results_dir, table)}.{{md,csv,png}}")
        return

    if args.merge_from:
        for source in args.merge_from.split(","):
            base = os.path.join(source, table)
            if not os.path.isfile(base + ".csv"):
                raise SystemExit(f"benchmark: --merge_from: {base}.csv does not exist")
            curves = json.load(open(base + ".curves.json")) if os.path.isfile(base + ".curves.json") else {}
            rows = write_results(args.results_dir, args.dataset, read_rows(base + ".csv"), curves, table)
        print(f"{len(rows)} rows in {os.path.join(args.results_dir, table)}.{{md,csv,png}}")
        return

    seeds = parse_seeds(args.seeds)
    base_options = {"patience": args.patience if args.converge else None, "piece": args.piece}
    mode = run_mode(base_options)
    progress = Progress(os.path.join(args.results_dir, table + ".progress.json"))
    for model in args.models.split(","):
        preset, _ = resolve_preset(model, args.tiger_preset)
        for seed in seeds:
            name = model + (f" ({preset})" if preset else "") + (f" [{args.variant}]" if args.variant else "") + (
                f", {mode}" if mode != DEFAULT_MODE else "")
            run_key = f"{name} seed={seed} budget={args.budget:g} protocol={protocols[0]}"
            options = {**base_options, **progress.resume_options(run_key)}
            out = run_in_child(model, args.dataset, seed, args.budget, config_files, extra, preset, args.variant,
                               args.history_length, protocols, args.cold_item_ratio, options)
            if out["paused"]:
                progress.paused(run_key, out["paused"])
                print(f"{run_key}: paused after {out['paused']['epochs']} epochs ({out['paused']['fit_seconds']} s "
                      f"in all); run the same command again to continue it", flush=True)
                continue
            progress.finished(run_key)
            # Written after every run, so an interrupted benchmark keeps what it finished.
            write_results(args.results_dir, args.dataset, out["rows"],
                          {f"{name} seed={seed} budget={args.budget:g}": out["curve"]}, table)
            for row in out["rows"]:
                print(f"{model} seed={seed} ({row['protocol']}): " + ", ".join(f"{m}={row[f'test_{m}']}" for m in METRICS))
    print(f"results in {os.path.join(args.results_dir, table)}.{{md,csv,png}}")


if __name__ == "__main__":
    main()
