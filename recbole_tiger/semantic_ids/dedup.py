"""The collision level: a last code that numbers items sharing the same quantized prefix.

TIGER generates an item by its ID, so two items with the same ID cannot be told apart.
Following the paper, a final code 0, 1, 2, … is appended within each group of identical
prefixes (in item order), which makes every ID unique.
"""
import torch

from recbole_tiger.semantic_ids.diagnostics import prefix_groups


class CollisionGroupTooLarge(ValueError):
    pass


def append_collision_code(codes, max_size=None, tokens=None):
    """codes [N, L] → ([N, L+1], size of the collision level actually needed).

    ``max_size`` (``sid_dedup_size``) caps the collision level; ``None`` widens it to
    whatever the largest group needs.
    """
    inverse, counts = prefix_groups(codes)
    needed = int(counts.max()) if len(counts) else 1
    if max_size is not None and needed > max_size:
        group = int(counts.argmax())
        members = (inverse == group).nonzero().squeeze(1)[:8].tolist()
        examples = [tokens[i] for i in members] if tokens is not None else members
        raise CollisionGroupTooLarge(
            f"{needed} items share the semantic-ID prefix {codes[members[0]].tolist()} "
            f"(e.g. {examples}), more than sid_dedup_size={max_size} can number. Their texts are "
            "probably identical or nearly so: check the item file, use more/larger codebooks, or "
            "set sid_dedup_size: ~ to widen the collision level."
        )
    # rank of each item within its group, in item order: stable sort by group id
    order = torch.sort(inverse, stable=True).indices                   # [N]
    sorted_groups = inverse[order]
    group_start = torch.cumsum(counts, 0) - counts                      # [G]
    rank_sorted = torch.arange(len(order)) - group_start[sorted_groups]
    rank = torch.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return torch.cat([codes, rank[:, None]], dim=1), needed
