"""Score fusion with the first stage (weight 0 is the first stage; valid chooses) and the paired
bootstrap interval of a system's difference to the first stage."""
import math

import numpy as np
import pytest
import torch

from recbole_tiger.rerank.fusion import choose_fusion_weight, fused_order, paired_bootstrap, standardise
from recbole_tiger.rerank.train import user_ndcg


def lists(n_users=200, k=20, seed=0):
    """First-stage lists (scores descending) whose target sits at a random position."""
    g = torch.Generator().manual_seed(seed)
    candidates = torch.stack([torch.randperm(1000, generator=g)[:k] + 1 for _ in range(n_users)])
    target = candidates[torch.arange(n_users), torch.randint(0, k, (n_users,), generator=g)]
    scores = torch.sort(torch.randn(n_users, k, generator=g), dim=1, descending=True).values
    return {"candidates": candidates, "target": target, "scores": scores}


def test_standardise_treats_unreached_items_as_the_lowest():
    z = standardise(torch.tensor([[3.0, 1.0, -math.inf], [2.0, 2.0, 2.0]]))
    assert torch.isfinite(z).all() and z[0, 1] == z[0, 2] and z[0, 0] > z[0, 1]
    assert torch.all(z[1] == 0)


def test_weight_zero_is_the_first_stage_and_infinity_the_reranker():
    split = lists()
    reranker = torch.randn(200, 20)
    assert torch.equal(fused_order(split["scores"], reranker, 0.0), torch.arange(20).expand(200, 20))
    assert torch.equal(fused_order(split["scores"], reranker, math.inf), reranker.argsort(1, descending=True))


def test_valid_chooses_the_first_stage_unless_the_reranker_helps():
    split = lists()
    noise = torch.randn(200, 20, generator=torch.Generator().manual_seed(1))
    # a reranker that knows nothing: the first stage (weight 0) or a weight that ties with it
    weight, ndcg = choose_fusion_weight(split, split["scores"], torch.zeros(200, 20))
    assert weight == 0.0 and len(set(ndcg.values())) == 1
    # one that puts the target first: a positive weight, strictly better on valid
    oracle = noise + 10 * (split["candidates"] == split["target"][:, None]).float()
    weight, ndcg = choose_fusion_weight(split, split["scores"], oracle)
    assert weight > 0 and ndcg[weight] > ndcg[0.0]
    # valid on the first 50 users only
    weight, _ = choose_fusion_weight(split, split["scores"], oracle[:50])
    assert weight > 0


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(0)
    base = rng.random(2000)
    same = paired_bootstrap(base, base)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}
    better = base + 0.01 + rng.normal(0, 0.05, 2000)
    out = paired_bootstrap(better, base, n_resamples=2000)
    assert out["low"] < out["difference"] < out["high"] and out["low"] > 0
    # the interval is about the paired differences: +-1.96 * 0.05 / sqrt(2000) = 0.0022 wide each side
    assert out["high"] - out["low"] == pytest.approx(2 * 1.96 * 0.05 / np.sqrt(2000), rel=0.15)
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap(base[:10], base)


def test_user_ndcg_matches_the_mean_metric():
    from recbole_tiger.rerank.train import ranking_metrics

    split = lists()
    order = torch.randn(200, 20).argsort(1)
    per_user = user_ndcg(split["candidates"], split["target"], order)
    assert float(per_user.mean()) == pytest.approx(ranking_metrics(split["candidates"], split["target"], order)["ndcg@10"],
                                                   abs=1e-4)
    allowed = torch.tensor([1 / math.log2(r + 1) for r in range(1, 11)])
    assert all((allowed - v).abs().min() < 1e-6 for v in per_user[per_user > 0])


def candidate_file(model, candidates, users):
    split = {"users": users, "history": torch.zeros(len(users), 3, dtype=torch.long), "length": torch.ones(len(users)),
             "target": candidates[:, 0].clone(), "candidates": candidates, "scores": -torch.arange(4.0).expand(len(users), 4)}
    return {"model": model, "dataset": "tiny", "protocol": "repeatable", "item_tokens": ["[PAD]"] + list("abcdefghij"),
            "k": candidates.shape[1], "model_file": f"{model}.pth", "splits": {"valid": split, "test": split}}


def test_union_of_two_first_stages_by_reciprocal_rank_fusion():
    from recbole_tiger.rerank.candidates import union

    users = torch.tensor([1, 2])
    sasrec = candidate_file("SASRec", torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]]), users)
    tiger = candidate_file("TIGER", torch.tensor([[9, 3, 1, 10], [6, 5, 9, 10]]), users)
    fused = union(sasrec, tiger)
    test = fused["splits"]["test"]
    # both lists' items first (1: ranks 1 and 3; 3: ranks 3 and 2), then the single-list ones by rank
    assert test["candidates"][0].tolist() == [1, 3, 9, 2]
    assert test["candidates"][1].tolist()[:2] == [5, 6] or test["candidates"][1].tolist()[:2] == [6, 5]
    assert (test["scores"][:, :-1] >= test["scores"][:, 1:]).all() and fused["model"] == "SASRec + TIGER (RRF)"
    assert union(sasrec, tiger, k=6)["splits"]["valid"]["candidates"].shape == (2, 6)
    with pytest.raises(ValueError, match="fewer than k=9"):
        union(sasrec, tiger, k=9)
    with pytest.raises(ValueError, match="different valid users"):
        union(sasrec, candidate_file("TIGER", tiger["splits"]["test"]["candidates"], torch.tensor([1, 3])))
