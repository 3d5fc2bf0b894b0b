"""From scores per semantic ID to RecBole's scores per item, and the order of items sharing an ID.

Without the collision level (``sid_dedup: False``) several items can share one ID; they get
the ID's log-probability and are ordered among themselves by a tie-break in [0, 1) that
never moves an item across another ID's score (:func:`lexicographic`).
"""
import torch
import torch.nn.functional as F


def candidates_by_history(key, item):
    """Group RecBole's sampled-evaluation rows (one user repeated per candidate item) by history,
    so each history is encoded once.  key [R, K] (the rows' history identity), item [R] ->
    unique keys [U, K], candidates [U, W] (W = most candidates of one history, pad = item 1),
    and each row's (group [R], slot [R]) in that layout."""
    unique_key, group = torch.unique(key, dim=0, return_inverse=True)
    order = torch.argsort(group, stable=True)
    sizes = torch.bincount(group)
    starts = torch.cumsum(sizes, 0) - sizes
    slot = torch.empty_like(group)
    slot[order] = torch.arange(len(group), device=group.device) - starts[group[order]]
    candidates = torch.ones(len(sizes), int(sizes.max()), dtype=torch.long, device=item.device)
    candidates[group, slot] = item
    return unique_key, candidates, group, slot


def spread_over_items(leaf, score, leaf_items, n_items, tie_break=None):
    """Per-ID scores -> per-item scores, -inf for items of no generated ID.

    leaf [B, W] (trie leaf index, -1 = none), score [B, W], leaf_items [n_leaves, G] (0 = none),
    tie_break: callable(items [B, W, G]) -> [B, W, G] in [0, 1), or None.  -> [B, n_items]
    """
    items = leaf_items[leaf.clamp(min=0)]                                  # [B, W, G], 0 = none
    valid = (items > 0) & (leaf >= 0).unsqueeze(-1)
    item_score = score.unsqueeze(-1).expand(items.shape)
    if tie_break is not None:
        item_score = lexicographic(item_score, tie_break(items))
    out = torch.full((len(leaf), n_items), float("-inf"), dtype=item_score.dtype, device=leaf.device)
    out.scatter_(1, torch.where(valid, items, 0).flatten(1),
                 torch.where(valid, item_score, float("-inf")).flatten(1))
    out[:, 0] = float("-inf")
    return out


def popularity_tie_break(item_train_count, items):
    """More training interactions first.  items [B, ...] -> [B, ...] in [0, 1)"""
    count = item_train_count.double()
    return count[items] / (count.max() + 1)


def cosine_tie_break(item_text_emb, items, item_seq, item_seq_len):
    """Closer (cosine) to the mean text embedding of the history first.
    item_text_emb [n_items, d] (unit rows), items [B, ...], item_seq [B, N] -> [B, ...] in [0, 1)"""
    history = item_text_emb[item_seq].sum(1) / item_seq_len[:, None].clamp(min=1)
    history = F.normalize(history, dim=-1)                                  # [B, d]
    emb = item_text_emb[items]                                              # [B, ..., d]
    cos = (emb * history.view(len(history), *[1] * (items.dim() - 1), -1)).sum(-1)
    return (cos.double().clamp(-1, 1) + 1) / 2 * (1 - 2.0**-20)


def lexicographic(logp, tie_break):
    """Scores ordered by float32 log-prob first, then by tie_break in [0, 1): each item moves
    down by less than half the gap to the next representable float32 below its log-prob (exact
    in float64, so never across another ID's score)."""
    logp = logp.float()
    below = torch.nextafter(logp, torch.full_like(logp, float("-inf")))
    half_gap = (logp.double() - below.double()) / 2
    score = logp.double() - half_gap * (1 - tie_break)
    return torch.where(torch.isfinite(logp), score, float("-inf"))
