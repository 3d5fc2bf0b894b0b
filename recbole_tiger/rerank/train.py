"""Fit the reranker on training queries, validate by reranking the valid split, keep the best.

Multi-task loss (``task_weights``: sequential title generation and direct yes/no), AdamW with
linear warmup, a time budget, progress bars, validation NDCG@10 of the reranked valid lists
after every epoch (both scoring modes; the better one counts), early stopping, and the best
trainable weights saved to ``<out>`` and reloaded.
"""
import logging
import math
import os
import random
import time

import numpy as np
import torch
from tqdm import tqdm

from recbole_tiger.atomic_io import atomic_torch_save
from recbole_tiger.llm.finetune import make_trainable, optimizer_step, trainable_state, warmup_adamw
from recbole_tiger.rerank.prompts import (DIRECT_TEMPLATES, SEQUENTIAL_TEMPLATES, candidate_prompt, history_text,
                                          last_items, shared_text)

logger = logging.getLogger(__name__)
MODES = ("direct", "sequential", "both")


def candidate_scores(reranker, split, titles, row, with_feature, modes=MODES):
    """{mode: scores [K]} for one user's candidates (template 0 of each task); only the tasks the
    ``modes`` need are scored (``direct`` alone costs about half of all three)."""
    items = [int(c) for c in split["candidates"][row]]
    if hasattr(reranker, "score_items"):       # two-tower rerankers have one score for every mode
        scores = reranker.score_items(
            last_items(split["history"][row], split["length"][row], reranker.history_items), items)
        return {m: scores for m in modes}
    if hasattr(reranker, "score_titles"):
        scores = reranker.score_titles(history_text(split["history"][row], split["length"][row], titles),
                                       [titles[i] for i in items])
        return {m: scores for m in modes}
    shared = shared_text(split["users"][row], split["history"][row], split["length"][row], titles)
    out = {}
    if set(modes) & {"direct", "both"}:
        direct = [candidate_prompt("direct", titles[i], 0, with_feature)[0] for i in items]
        out["direct"] = reranker.score(shared, direct, None, items)
    if set(modes) & {"sequential", "both"}:
        sequential = [candidate_prompt("sequential", titles[i], 0) for i in items]
        out["sequential"] = reranker.score(shared, [p for p, _ in sequential], [a for _, a in sequential], items)
    if "both" in modes:
        z = lambda x: (x - x.mean()) / x.std().clamp_min(1e-6)
        out["both"] = z(out["direct"]) + z(out["sequential"])
    return {m: out[m] for m in modes}


def target_ranks(candidates, targets, order=None):
    """[U] 1-based rank of each target in its list (reordered by ``order`` [U, K]); 10**9 when absent."""
    cands = candidates if order is None else torch.gather(candidates, 1, order)
    hit = cands == targets[:, None]                                                     # [U, K]
    return torch.where(hit.any(1), hit.float().argmax(1) + 1, torch.full_like(targets, 10 ** 9))


def user_ndcg(candidates, targets, order=None, k=10):
    """[U] NDCG@k of each user's single target (the per-user values a paired comparison needs)."""
    rank = target_ranks(candidates, targets, order)
    return (rank <= k) / torch.log2(rank.float() + 1)


def ranking_metrics(candidates, targets, order=None, ks=(5, 10)):
    """Recall/NDCG@k of the targets in candidate lists (reordered by ``order`` [U, K])."""
    rank = target_ranks(candidates, targets, order)
    out = {}
    for k in ks:
        found = rank <= k
        out[f"recall@{k}"] = round(float(found.float().mean()), 4)
        out[f"ndcg@{k}"] = round(float((found / torch.log2(rank.float() + 1)).mean()), 4)
    return out


def rerank_scores(reranker, split, titles, with_feature, n_users=None, show_progress=True, modes=MODES):
    """{mode: [U, K] reranker scores} for the first ``n_users`` users of a split."""
    n = len(split["users"]) if n_users is None else min(n_users, len(split["users"]))
    scores = {m: [] for m in modes}
    for row in tqdm(range(n), desc="rerank", disable=not show_progress, leave=False):
        for mode, s in candidate_scores(reranker, split, titles, row, with_feature, modes).items():
            scores[mode].append(s)
    return {mode: torch.stack(s) for mode, s in scores.items()}


def metrics_of_scores(split, scores):
    """{mode: metrics} of the lists reordered by ``scores`` ({mode: [U, K]}, the first U users)."""
    return {mode: ranking_metrics(split["candidates"][: len(s)], split["target"][: len(s)],
                                  s.argsort(dim=1, descending=True)) for mode, s in scores.items()}


def evaluate(reranker, split, titles, with_feature, n_users=None, show_progress=True):
    """{mode: metrics} of the reranked lists of the first ``n_users`` users of a split."""
    return metrics_of_scores(split, rerank_scores(reranker, split, titles, with_feature, n_users, show_progress))


def train_reranker(reranker, examples, valid, titles, out, method="lora", budget_min=50.0, epochs=20, batch_size=8,
                   learning_rate=5e-4, warmup_steps=30, patience=2, lora_rank=16, task_weights=None,
                   n_valid_users=200, seed=0, show_progress=True, modes=MODES, piece_min=None):
    """Train in place; returns the log. The best state (by valid NDCG@10) is saved to ``out``.

    Resumable: ``piece_min`` caps this invocation's minutes; at the cap the whole training state
    (weights, optimizer, schedule, random streams, position in the epoch, log) goes to
    ``<out>.resume`` and the log says ``paused``; the same call continues from it, ``budget_min``
    counting the time of every piece. The file is removed when training ends."""
    task_weights = task_weights or {"sequential": 1.0, "direct": 1.0}
    with_feature = reranker.feature_id is not None
    torch.manual_seed(seed)
    rng = random.Random(seed)
    wrap_for_method(reranker, method, lora_rank)
    named = {k: p for k, p in reranker.named_parameters() if p.requires_grad}
    params = list(named.values())
    optimizer, schedule = warmup_adamw(params, learning_rate, warmup_steps)
    log = {"method": method, "lora_rank": lora_rank, "n_examples": len(examples),
           "trainable_params": sum(p.numel() for p in params), "task_weights": task_weights, "epochs": []}
    state = {"epoch": 0, "position": 0, "order": None, "losses": [], "step": 0, "seconds": 0.0, "best": -math.inf,
             "bad": 0, "pieces": 0}
    resume_file = out + ".resume"
    if os.path.isfile(resume_file):
        saved = torch.load(resume_file, map_location="cpu", weights_only=False)
        if saved["n_examples"] != len(examples) or set(saved["weights"]) != set(named):
            raise ValueError(f"{resume_file}: a paused training of other examples or another reranker; "
                             "remove it to start again")
        with torch.no_grad():
            for k, v in saved["weights"].items():
                named[k].copy_(v)
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        state, log = saved["state"], saved["log"]
        logger.info(f"resumed from {resume_file}: epoch {state['epoch']}, step {state['step']}, "
                    f"{state['seconds'] / 60:.1f} min of the budget spent")
    start, steps_here = time.time(), 0
    spent = lambda: state["seconds"] + time.time() - start

    def pause():
        state["seconds"] = spent()
        state["pieces"] += 1
        atomic_torch_save(resume_file, {"n_examples": len(examples), "weights": trainable_state(reranker),
                                        "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                                        "rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
                                        "state": state, "log": log})
        log.update(paused=True, steps=state["step"], train_seconds=round(state["seconds"], 1))
        return log

    while state["epoch"] < epochs:
        epoch = state["epoch"]
        if state["order"] is None:
            state["order"] = list(range(len(examples)))
            rng.shuffle(state["order"])
        order = state["order"]
        reranker.train()
        starts = range(state["position"], len(order), batch_size)
        bar = tqdm(starts, desc=f"epoch {epoch}", disable=not show_progress, leave=False)
        for i in bar:
            if piece_min is not None and steps_here and time.time() - start >= piece_min * 60:   # >= 1 step a piece
                state["position"] = i
                return pause()
            state["losses"].append(optimizer_step(
                reranker.loss([examples[j] for j in order[i: i + batch_size]], task_weights), optimizer, schedule,
                params))
            state["step"] += 1
            steps_here += 1
            bar.set_postfix(loss=f"{state['losses'][-1]:.3f}")
            if spent() > budget_min * 60:
                break
        scores = rerank_scores(reranker, valid, titles, with_feature, n_valid_users, show_progress, modes)
        metrics = metrics_of_scores(valid, scores)
        mode = max(modes, key=lambda m: metrics[m]["ndcg@10"])
        loss = float(np.mean(state["losses"])) if state["losses"] else math.nan
        log["epochs"].append({"epoch": epoch, "step": state["step"], "seconds": round(spent(), 1),
                              "train_loss": round(loss, 4), "valid": metrics, "best_mode": mode})
        logger.info(f"epoch {epoch}: loss {loss:.4f}, valid NDCG@10 "
                    + ", ".join(f"{m} {metrics[m]['ndcg@10']}" for m in modes))
        if metrics[mode]["ndcg@10"] > state["best"]:
            state["best"], state["bad"] = metrics[mode]["ndcg@10"], 0
            # the best epoch's valid scores too: score fusion is chosen on them without scoring again
            log.update(best_epoch=epoch, best_mode=mode, best_valid_ndcg10=state["best"], best_valid=metrics,
                       best_valid_scores=scores)
            save_reranker(reranker, out, {k: v for k, v in log.items() if k not in ("epochs", "paused")})
        else:
            state["bad"] += 1
        state.update(epoch=epoch + 1, position=0, order=None, losses=[])
        if state["bad"] >= patience or spent() > budget_min * 60:
            break
    log.pop("paused", None)
    log.update(steps=state["step"], train_seconds=round(spent(), 1), pieces=state["pieces"] + 1,
               stopped_by="patience" if state["bad"] >= patience else ("budget" if spent() > budget_min * 60 else "epochs"))
    update_reranker_meta(out, steps=log["steps"], train_seconds=log["train_seconds"], pieces=log["pieces"],
                         stopped_by=log["stopped_by"], curve=[{k: e[k] for k in ("epoch", "step", "seconds", "train_loss")}
                                                              | {"valid_ndcg@10": e["valid"][e["best_mode"]]["ndcg@10"]}
                                                              for e in log["epochs"]])
    if os.path.isfile(resume_file):
        os.remove(resume_file)
    return log


def wrap_for_method(reranker, method, lora_rank=16):
    """LoRA adapters around the LM (``method='lora'``), as training does before its first step;
    a saved LoRA reranker loads only into a reranker wrapped the same way."""
    if method == "lora":
        reranker.lm = make_trainable(reranker.lm, method, [], lora_rank)
    return reranker


def save_reranker(reranker, path, meta):
    atomic_torch_save(path, {"state": {k: v.cpu() for k, v in trainable_state(reranker).items()}, "meta": meta})


def update_reranker_meta(path, **meta):
    """Add to the saved file's meta (e.g. the whole run's steps), weights untouched."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    saved["meta"].update(meta)
    atomic_torch_save(path, saved)


def load_reranker_state(reranker, path, wrap=False):
    """Load saved trainable weights into a reranker built the same way (LoRA wrapped first; with
    ``wrap``, a fresh reranker is wrapped here as the saved one was trained)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if wrap:
        wrap_for_method(reranker, saved["meta"]["method"], saved["meta"].get("lora_rank", 16))
    named = dict(reranker.named_parameters())
    missing = [k for k in saved["state"] if k not in named]
    if missing:
        raise ValueError(f"{path}: weights {missing[:3]} do not fit this reranker (built with another "
                         "base model, method or feature file?)")
    with torch.no_grad():
        for k, v in saved["state"].items():
            named[k].copy_(v)
    return saved["meta"]


__all__ = ["train_reranker", "evaluate", "rerank_scores", "metrics_of_scores", "ranking_metrics", "user_ndcg", "save_reranker", "load_reranker_state",
           "update_reranker_meta", "wrap_for_method", "DIRECT_TEMPLATES", "SEQUENTIAL_TEMPLATES"]
