"""Text similarity of items to a history: the text nearest-neighbour signal.

A history is the recency-weighted mean of its items' text embeddings (the sentence embeddings
the semantic IDs are built from); an item's score is the cosine of its own text embedding with
it. ``--model=TextNN`` ranks by it alone; TIGER's dense head can add it to its ranking
(``text_fusion_weight``).
"""
import torch
import torch.nn.functional as F


def history_vectors(item_text, item_seq, item_seq_len, *, decay):
    """item_text [n_items, d] (unit rows, row 0 = padding = 0), item_seq [B, N] (left-aligned),
    item_seq_len [B] -> [B, d] unit vectors: sum of decay**age x item text, age 0 = the latest."""
    positions = torch.arange(item_seq.shape[1], device=item_seq.device)
    age = (item_seq_len[:, None] - 1 - positions).clamp(min=0).float()
    weight = torch.where(positions < item_seq_len[:, None], decay ** age, 0.0)   # [B, N]
    return F.normalize((weight[..., None] * item_text[item_seq]).sum(1), dim=-1)


def history_mask(item_seq, n_items):
    """item_seq [B, N] -> [B, n_items] bool: the history's items (and the padding item 0)."""
    mask = torch.zeros(len(item_seq), n_items, dtype=torch.bool, device=item_seq.device)
    mask[:, 0] = True                                               # a full window has no padding
    return mask.scatter_(1, item_seq, True)
