"""How far constrained beam search is from exact ranking: after testing, a run compares TIGER's
beam top-K with the exact top-K on ``beam_check_users`` test users (``benchmarks/beam_check.py``
does the same for a saved checkpoint).
"""
from logging import getLogger
from time import time

import torch
from recbole.utils import set_color


@torch.no_grad()
def beam_exact_agreement(model, interaction, topk=(5, 10)) -> dict:
    """How far constrained beam search is from the exact ranking, on one batch of users.

    Both rankings are the ones RecBole's evaluator ranks: RecBole 1.2.1 does not mask history
    items for sequential models, so history is masked in both only when the model excludes it
    from its beams (``eval_exclude_history``). They are compared as top-K *sets*: ``differ@K`` =
    fraction of users whose beam top-K is not the exact top-K, ``overlap@K`` = mean |beam top-K ∩
    exact top-K| / K. Exact scoring costs ~(number of valid ID prefixes) decoder tokens per user:
    keep batches small.
    """
    item_seq = interaction[model.ITEM_SEQ]
    mode = model.settings.eval_mode
    try:
        model.set_ranking(eval_mode="beam")
        beam = model.full_sort_predict(interaction)
        model.set_ranking(eval_mode="exact")
        exact = model.full_sort_predict(interaction)
    finally:
        model.set_ranking(eval_mode=mode)
    excluded = torch.zeros(beam.shape, dtype=torch.bool, device=beam.device)
    if model.settings.eval_exclude_history:
        excluded.scatter_(1, item_seq, True)
    excluded[:, 0] = True                                                    # padding item
    beam, exact = beam.masked_fill(excluded, float("-inf")), exact.masked_fill(excluded, float("-inf"))
    result = {"n_users": len(beam)}
    for k in topk:
        b_score, b_top = beam.topk(k, dim=1)
        e_top = exact.topk(k, dim=1).indices
        shared = ((b_top[:, :, None] == e_top[:, None, :]).any(-1) & torch.isfinite(b_score)).sum(1)
        result[f"differ@{k}"] = (shared < k).float().mean().item()
        result[f"overlap@{k}"] = (shared.float() / k).mean().item()
    return result


def beam_vs_exact(model, eval_data, n_users):
    """For generative models with an exact scoring mode (TIGER): how often beam search's top-K
    differs from the exact top-K on the first ``n_users`` users of ``eval_data`` (None if not
    applicable). Exact scoring decodes every valid ID prefix, hence a sample of users."""
    if not hasattr(model, "settings") or not hasattr(model, "item_codes") or n_users <= 0 or model.settings.eval_mode != "beam":
        return None
    interaction = next(iter(eval_data))[0]
    interaction = interaction[torch.arange(min(n_users, len(interaction)))].to(model.item_codes.device)
    start = time()
    model.eval()
    result = beam_exact_agreement(model, interaction, topk=tuple(model.settings.topk))
    result["seconds"] = round(time() - start, 1)
    getLogger().info(set_color("beam vs exact", "blue") + f" (beam_size {model.settings.beam_size}, "
                     f"{result['n_users']} test users): " + ", ".join(f"{k}: {v}" for k, v in result.items()))
    return result
