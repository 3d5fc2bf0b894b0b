"""Rerank a first stage's candidates and compare, on the same users and the same lists:
(a) the first stage's order, (b) the trained reranker, (c) the same reranker untrained,
(d) simple rerankers: candidate popularity, and MiniLM cosine between the history and the
candidate titles; (e) each reranker fused with the first stage's scores (``fusion``: weight 0 is
the first stage, chosen on valid). Every row carries its test NDCG@10 difference to the first
stage with a paired bootstrap 95% interval, and recall@K, the share of test targets in the lists
(the ceiling of any reranking).

    python -m recbole_tiger.rerank.compare --candidates=saved/rerank/amazon-beauty-SASRec.pt \\
        --budget=50 --out=saved/rerank/amazon-beauty-SASRec-reranker.pt

Scoring mode (direct yes/no, sequential title likelihood, or both) is chosen on the valid
split for each reranker, then the test split is reranked once. Each system's row merges into
``results/<dataset>-rerank.md`` (and ``.csv``) with commit, date and machine as soon as it is
measured, so a long comparison can be split over invocations (a 135M LM reranks about one
user per 5 s on one core here):

    python -m recbole_tiger.rerank.compare --candidates=... --systems=baselines,untrained
    python -m recbole_tiger.rerank.compare --candidates=... --systems=trained --budget=50
    python -m recbole_tiger.rerank.compare --candidates=... --systems=trained --use_saved   # test again, no training
"""
import argparse
import logging
import os

import numpy as np
import torch

from recbole_tiger.llm.base_model import DEFAULT_BASE_MODEL, load_base_model
from recbole_tiger.rerank.model import PRECISIONS, Reranker, resolve_precision
from recbole_tiger.rerank.prompts import candidate_file_titles, last_items, training_examples
from recbole_tiger.rerank.fusion import choose_fusion_weight, fused_order, paired_bootstrap
from recbole_tiger.rerank.towers import (AdapterTowerReranker, TowerReranker, is_tower, load_tower_encoder,
                                         title_vectors)
from recbole_tiger.rerank.train import (MODES, load_reranker_state, metrics_of_scores, ranking_metrics, rerank_scores,
                                        train_reranker, user_ndcg)

SYSTEMS = ("baselines", "untrained", "trained")

COLUMNS = ["system", "first_stage", "mode", "fusion_weight", "users", "K", "recall@K", "recall@5", "recall@10",
           "ndcg@5", "ndcg@10", "delta_ndcg@10", "delta_low", "delta_high", "valid_ndcg@10", "valid_users", "train",
           "commit", "date", "machine"]


def load_item_features(path, item_tokens):
    """[n_items, d] from ``.npy`` (rows in internal-id order, row 0 = padding) or an atomic file
    ``item_id:token<TAB>feature:float_seq`` (space-separated floats); missing items get zeros."""
    if path.endswith(".npy"):
        features = np.load(path)
        if features.shape[0] != len(item_tokens):
            raise ValueError(f"{path}: {features.shape[0]} rows, the dataset has {len(item_tokens)} item ids "
                             "(incl. padding 0): one row per internal item id expected")
        return features.astype(np.float32)
    rows = {}
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if len(header) != 2:
            raise ValueError(f"{path}:1: expected two columns 'item_id:token<TAB>feature:float_seq', got {header}")
        for line_no, line in enumerate(f, start=2):
            token, _, values = line.rstrip("\n").partition("\t")
            try:
                rows[token] = np.array(values.split(), dtype=np.float32)
            except ValueError:
                raise ValueError(f"{path}:{line_no}: feature of {token!r} is not space-separated floats") from None
    dims = {len(v) for v in rows.values()}
    if len(dims) != 1:
        raise ValueError(f"{path}: feature vectors of different lengths {sorted(dims)}")
    features = np.zeros((len(item_tokens), dims.pop()), dtype=np.float32)
    for i, token in enumerate(item_tokens):
        if str(token) in rows:
            features[i] = rows[str(token)]
    return features


def popularity_order(split, counts):
    return counts[split["candidates"]].argsort(dim=1, descending=True)


def text_similarity_order(split, titles):
    """Candidates by cosine between their title and the mean of the history titles (MiniLM)."""
    emb = title_vectors(load_tower_encoder("minilm"), titles,
                        torch.cat([split["candidates"].flatten(), split["history"].flatten()]))
    orders = []
    for row in range(len(split["users"])):
        hist = emb[last_items(split["history"][row], split["length"][row])].mean(0)
        orders.append((emb[split["candidates"][row]] @ hist).argsort(descending=True))
    return torch.stack(orders)


def versus_first_stage(test, order):
    """The test NDCG@10 difference to the first stage on the same users, with its paired
    bootstrap 95% interval (``order`` [U, K]: the system's reordering of the first stage's lists)."""
    base = user_ndcg(test["candidates"], test["target"])
    diff = paired_bootstrap(user_ndcg(test["candidates"], test["target"], order), base)
    return {"delta_ndcg@10": round(diff["difference"], 4), "delta_low": round(diff["low"], 4),
            "delta_high": round(diff["high"], 4)}


def reranker_rows(name, reranker, valid, test, titles, with_feature, n_valid_users, train_note, common,
                  valid_scores=None, modes=MODES):
    """Two rows: the reranker alone (scoring mode chosen on valid) and its fusion with the first
    stage (mode and weight chosen on valid); ``valid_scores``: already measured on these weights,
    e.g. by training's best epoch (a 135M LM reranks ~one user per 5 s here). Test is scored once."""
    if valid_scores is None or set(modes) - set(valid_scores):     # (trained with other --modes)
        valid_scores = rerank_scores(reranker, valid, titles, with_feature, n_valid_users, modes=modes)
    valid_scores = {m: valid_scores[m] for m in modes}
    valid_metrics = metrics_of_scores(valid, valid_scores)
    mode = max(modes, key=lambda m: valid_metrics[m]["ndcg@10"])
    fusion = {m: choose_fusion_weight(valid, valid["scores"], s) for m, s in valid_scores.items()}
    fusion_mode = max(modes, key=lambda m: (round(fusion[m][1][fusion[m][0]], 10), -fusion[m][0]))
    weight, valid_fused = fusion[fusion_mode][0], fusion[fusion_mode][1][fusion[fusion_mode][0]]
    # test once, only the scoring modes valid chose
    test_scores = rerank_scores(reranker, test, titles, with_feature, modes=tuple(dict.fromkeys((mode, fusion_mode))))
    alone = test_scores[mode].argsort(dim=1, descending=True)
    fused = fused_order(test["scores"], test_scores[fusion_mode], weight)
    return [{"system": name, "mode": mode, **common, **ranking_metrics(test["candidates"], test["target"], alone),
             **versus_first_stage(test, alone), "valid_ndcg@10": valid_metrics[mode]["ndcg@10"], "train": train_note},
            {"system": f"fusion with the first stage: {name}", "mode": fusion_mode, "fusion_weight": weight, **common,
             **ranking_metrics(test["candidates"], test["target"], fused), **versus_first_stage(test, fused),
             "valid_ndcg@10": round(valid_fused, 4), "train": train_note}]


CURVE_COLUMNS = ["reranker", "first_stage", "epoch", "step", "seconds", "train_loss", "valid_users", *(f"valid_ndcg@10 {m}" for m in MODES),
                 "commit", "date", "machine"]


def write_curve(base, data, log, common, reranker):
    """The training curve (train loss, valid NDCG@10 per scoring mode, after every epoch) into
    ``<dataset>-rerank-curve.{csv,md}``."""
    from recbole_tiger.benchmark.results_table import write_table

    rows = [{"reranker": reranker, "first_stage": common["first_stage"], "epoch": e["epoch"], "step": e["step"],
             "seconds": e["seconds"], "train_loss": e["train_loss"], "valid_users": common["valid_users"],
             **{f"valid_ndcg@10 {m}": v["ndcg@10"] for m, v in e["valid"].items()},
             **{k: common[k] for k in ("commit", "date", "machine")}} for e in log["epochs"]]
    write_table(base, f"Reranker training curve on {data['dataset']} (valid NDCG@10 of the reranked lists after each "
                "epoch)", CURVE_COLUMNS, rows, ["reranker", "first_stage", "epoch"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", required=True, help="file written by recbole_tiger.rerank.candidates")
    parser.add_argument("--out", default=None, help="trained reranker weights (default: beside the candidates)")
    parser.add_argument("--base_model", default=DEFAULT_BASE_MODEL,
                        help="a causal LM (smollm2, a Hugging Face name or folder): the P5-style prompt reranker; "
                             "minilm or sentence-transformers:<name or folder>: the two-tower text reranker "
                             "(rerank/towers.py)")
    parser.add_argument("--method", default=None, choices=["lora", "full", "adapter"],
                        help="a causal LM: lora (default) or full; the two-tower reranker: adapter (default: the "
                             "encoder frozen, a map on each side trained) or full (the encoder fine-tuned)")
    parser.add_argument("--precision", default="auto", choices=["auto", *PRECISIONS],
                        help="bfloat16: mixed precision (bf16 autocast, float32 weights), faster on a CPU with "
                             "bf16 arithmetic (AVX512-BF16/AMX; 1.6x when scoring here) or a GPU; float32: exact; "
                             "auto: bfloat16 where the hardware has it")
    parser.add_argument("--budget", type=float, default=50.0, help="training minutes, all pieces together")
    parser.add_argument("--piece", type=float, default=None,
                        help="minutes of training in this invocation: then the state is saved to <out>.resume and "
                             "the same command continues it")
    parser.add_argument("--patience", type=int, default=2, help="epochs without a better valid NDCG@10 before stopping")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=None, help="default: 8, or 256 with --method=adapter")
    parser.add_argument("--learning_rate", type=float, default=None,
                        help="default: 5e-4 (LoRA of a causal LM), 3e-5 (every weight of a two-tower "
                             "reranker's encoder), 1e-3 (--method=adapter)")
    parser.add_argument("--n_negatives", type=int, default=None,
                        help="negatives per training user from the first stage's list: the direct task's (default "
                             "3), or the two-tower reranker's list (default: every other candidate)")
    parser.add_argument("--sequential_weight", type=float, default=1.0)
    parser.add_argument("--direct_weight", type=float, default=1.0)
    parser.add_argument("--n_valid_users", type=int, default=200, help="valid users reranked after each epoch")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="scoring modes valid chooses among, comma-separated (direct alone: about half the time)")
    parser.add_argument("--item_features", default=None, help=".npy or atomic item_id/float_seq file")
    parser.add_argument("--results_dir", default="results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help="which rows to measure now, comma-separated: baselines (first stage, popularity, "
                             "MiniLM cosine), untrained, trained; the others stay as the table has them")
    parser.add_argument("--use_saved", action="store_true",
                        help="trained: evaluate the reranker saved at --out (by an earlier invocation) instead "
                             "of training one")
    args = parser.parse_args(argv)
    tower = is_tower(args.base_model)
    if tower and args.method == "lora":
        raise SystemExit("rerank.compare: --method=lora is for a causal LM; the two-tower reranker "
                         f"(--base_model={args.base_model}) trains --method=adapter or --method=full")
    if not tower and args.method == "adapter":
        raise SystemExit(f"rerank.compare: --method=adapter is the two-tower reranker's (--base_model=minilm); "
                         f"a causal LM ({args.base_model}) trains --method=lora or --method=full")
    args.method = args.method or ("adapter" if tower else "lora")
    adapter = args.method == "adapter"
    args.learning_rate = args.learning_rate or (1e-3 if adapter else 3e-5 if tower else 5e-4)
    args.batch_size = args.batch_size or (256 if adapter else 8)
    if args.n_negatives is None and not tower:
        args.n_negatives = 3
    kind = ("two-tower text reranker (frozen encoder)" if adapter else "two-tower text reranker" if tower
            else "LM reranker")
    systems = args.systems.split(",")
    modes = tuple(args.modes.split(","))
    if not modes or set(modes) - set(MODES):
        raise SystemExit(f"rerank.compare: --modes: expected some of {list(MODES)}, got {args.modes!r}")
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        raise SystemExit(f"rerank.compare: --systems: unknown {unknown}, expected some of {list(SYSTEMS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from recbole_tiger.benchmark.results_table import git_commit, machine_description, utc_date, write_table

    data = torch.load(args.candidates, map_location="cpu", weights_only=False)
    titles = candidate_file_titles(data)
    features = load_item_features(args.item_features, data["item_tokens"]) if args.item_features else None
    train, valid, test = (data["splits"][s] for s in ("train", "valid", "test"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # the adapter scores frozen float32 vectors with a few small matrices: no mixed precision
    precision = "float32" if adapter else resolve_precision(args.precision, device)
    out = args.out or os.path.splitext(args.candidates)[0] + "-reranker.pt"
    in_list = (test["candidates"] == test["target"][:, None]).any(1).float().mean()
    common = {"first_stage": f"{data['model']} ({data['protocol']})", "users": len(test["users"]), "K": data["k"],
              "recall@K": round(float(in_list), 4),
              "valid_users": min(args.n_valid_users, len(valid["users"])),
              "commit": git_commit(), "date": utc_date(), "machine": machine_description(device)}

    if tower and features is not None:
        raise SystemExit("rerank.compare: --item_features needs a causal LM reranker (VIP5's feature token); "
                         "the two-tower reranker reads titles only")

    vectors = None
    if adapter and set(systems) & {"untrained", "trained"}:   # every title a split names, embedded once
        vectors = title_vectors(load_tower_encoder(args.base_model, device), titles,
                                torch.cat([split[key].flatten() for split in (train, valid, test)
                                           for key in ("candidates", "history", "target")]))

    def build():
        torch.manual_seed(args.seed)
        if adapter:
            return AdapterTowerReranker(vectors).to(device)
        if tower:
            return TowerReranker(load_tower_encoder(args.base_model, device), precision=precision).to(device)
        return Reranker(*load_base_model(args.base_model), features=features,
                        precision=precision).to(device)

    base = os.path.join(args.results_dir, f"{data['dataset']}-rerank")
    title = (f"Reranking {data['model']}'s top-{data['k']} on {data['dataset']} (test split, sampled users as in "
             "the users column; valid on the first valid_users of them; modes chosen on valid)")
    rows = []

    def save(new_rows):  # each system's row is kept as soon as it is measured
        rows.extend(new_rows)
        write_table(base, title, COLUMNS, new_rows, ["system", "first_stage", "users", "K"])

    if "baselines" in systems:
        # valid on the same first n_valid_users users the rerankers are validated on
        counts, n = data["item_train_count"], common["valid_users"]
        valid_head = {key: value[:n] for key, value in valid.items()}

        def row(name, test_order, valid_order):
            versus = versus_first_stage(test, test_order) if test_order is not None else {}
            return {"system": name, "mode": "", **common, **versus,
                    **ranking_metrics(test["candidates"], test["target"], test_order),
                    "valid_ndcg@10": ranking_metrics(valid_head["candidates"], valid_head["target"],
                                                     valid_order)["ndcg@10"], "train": ""}

        save([row("first stage", None, None),
              row("popularity", popularity_order(test, counts), popularity_order(valid_head, counts)),
              row("MiniLM history-candidate cosine", text_similarity_order(test, titles),
                  text_similarity_order(valid_head, titles))])
    with_feature = features is not None
    if "untrained" in systems:
        save(reranker_rows(f"{kind}, untrained ({args.base_model}, {precision})", build(), valid, test, titles,
                           with_feature, args.n_valid_users, "none", common, modes=modes))
    if "trained" in systems:
        reranker = build()
        if args.use_saved:
            if not os.path.isfile(out):
                raise SystemExit(f"rerank.compare: --use_saved: {out} does not exist (train it first, without "
                                 "--use_saved)")
        else:
            examples = (reranker.training_examples(train, titles, args.n_negatives, args.seed) if tower else
                        training_examples(train, titles, args.n_negatives, args.seed, with_feature))
            log = train_reranker(reranker, examples, valid, titles, out, args.method, args.budget, args.epochs,
                                 args.batch_size, args.learning_rate,
                                 task_weights={"sequential": args.sequential_weight, "direct": args.direct_weight},
                                 n_valid_users=args.n_valid_users, seed=args.seed, modes=modes, piece_min=args.piece,
                                 patience=args.patience)
            write_curve(base + "-curve", data, log, common, f"{kind} ({args.base_model}, {precision})")
            if log.get("paused"):
                print(f"paused after {log['train_seconds'] / 60:.0f} min of training ({log['steps']} steps, "
                      f"{len(log['epochs'])} epochs so far): the same command continues from {out}.resume")
                return
        # the best epoch's weights, as saved (a reranker not trained here is first wrapped as it was)
        meta = load_reranker_state(reranker, out, wrap=args.use_saved)
        note = (f"{meta['method']}, {meta.get('steps', '?')} steps over {meta['n_examples']} examples from "
                f"{len(train['users'])} training users, {meta.get('train_seconds', 0) / 60:.0f} min, best epoch "
                f"{meta.get('best_epoch')}")
        save(reranker_rows(f"{kind}, trained ({args.base_model}, {precision})", reranker, valid, test, titles,
                           with_feature, args.n_valid_users, note, common, valid_scores=meta.get("best_valid_scores"),
                           modes=modes))
    for row in rows:
        print({k: row.get(k, "") for k in ("system", "mode", "fusion_weight", "ndcg@10", "delta_ndcg@10", "delta_low",
                                            "delta_high", "valid_ndcg@10")})


if __name__ == "__main__":
    main()
