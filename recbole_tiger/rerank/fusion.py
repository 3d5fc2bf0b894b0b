"""Score fusion with the first stage, and paired comparisons on the same users.

    fused = z(first-stage score) + weight * z(reranker score)      (z: per user, over its K candidates)

``weight`` = 0 is the first stage's own order, so a weight chosen on valid can only leave the
first stage where the reranker helps; ``inf`` is the reranker alone. A system's difference to the
first stage is reported with a paired bootstrap interval: the users are resampled, the same
resample for both systems, so the interval reflects the per-user differences, not the spread of
NDCG@10 over users (which is wider than most differences between rerankers).
"""
import math

import numpy as np
import torch

from recbole_tiger.rerank.train import user_ndcg

FUSION_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, math.inf)


def standardise(scores):
    """[U, K] -> per-row z-scores; a non-finite score (an item a beam never reached) counts as
    the row's lowest finite score."""
    scores = scores.double().clone()
    finite = torch.isfinite(scores)
    low = torch.where(finite, scores, torch.full_like(scores, math.inf)).min(1, keepdim=True).values
    scores = torch.where(finite, scores, torch.where(torch.isfinite(low), low, torch.zeros_like(low)))
    return (scores - scores.mean(1, keepdim=True)) / scores.std(1, keepdim=True).clamp_min(1e-9)


def fused_order(first_stage, reranker, weight):
    """[U, K] candidate order (best first) of z(first_stage) + weight * z(reranker)."""
    if math.isinf(weight):
        return reranker.argsort(dim=1, descending=True, stable=True)
    fused = standardise(first_stage) + weight * standardise(reranker)
    return fused.argsort(dim=1, descending=True, stable=True)


def choose_fusion_weight(split, first_stage, reranker, weights=FUSION_WEIGHTS):
    """(weight, {weight: valid NDCG@10}) over the first U users (``reranker`` [U, K]); ties go to the
    smaller weight, so the first stage wins unless the reranker strictly helps."""
    n = len(reranker)
    cands, target = split["candidates"][:n], split["target"][:n]
    ndcg = {w: float(user_ndcg(cands, target, fused_order(first_stage[:n], reranker, w)).mean()) for w in weights}
    best = max(weights, key=lambda w: (round(ndcg[w], 10), -w))
    return best, ndcg


def paired_bootstrap(system, baseline, n_resamples=10000, seed=0, level=0.95):
    """Mean of ``system - baseline`` (per-user values on the same users) and its percentile
    bootstrap interval: {'difference', 'low', 'high'}."""
    a, b = np.asarray(system, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired_bootstrap: per-user values of the same users expected, got shapes {a.shape}, {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 1000):               # 1000 resamples at a time bound the memory
        block = rng.integers(0, len(diff), size=(min(1000, n_resamples - start), len(diff)))
        means[start: start + len(block)] = diff[block].mean(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"difference": float(diff.mean()), "low": float(low), "high": float(high)}
