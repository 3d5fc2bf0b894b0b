"""Numbers that make a bad set of semantic IDs impossible to miss.

* usage: share of a level's codes used by at least one item (collapse → a few %)
* perplexity: exp(entropy of the code frequencies) — the effective number of codes in use
* unique-prefix rate: share of items whose semantic-ID prefix no other item has
* category agreement: how often two items sharing a first-level code have the same top
  category, against the rate for two random items (chance) — do codes *mean* something?
"""
from collections import Counter

import torch


def level_usage_and_perplexity(codes, codebook_sizes):
    """codes [N, L] → {'usage': [L] fractions, 'perplexity': [L]}."""
    usage, perplexity = [], []
    for level, size in enumerate(codebook_sizes):
        counts = torch.bincount(codes[:, level], minlength=size).double()
        p = counts[counts > 0] / counts.sum()
        usage.append(round(float((counts > 0).sum()) / size, 4))
        perplexity.append(round(float(torch.exp(-(p * p.log()).sum())), 2))
    return {"usage": usage, "perplexity": perplexity}


def prefix_groups(codes):
    """Group sizes of identical rows.   codes [N, L] → (inverse [N], counts [G])"""
    _, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    return inverse, counts


def unique_prefix_rate(codes):
    """Share of items whose code tuple no other item has."""
    inverse, counts = prefix_groups(codes)
    return float((counts[inverse] == 1).float().mean())


def collision_stats(codes):
    inverse, counts = prefix_groups(codes)
    return {
        "unique_prefix_rate": round(float((counts[inverse] == 1).float().mean()), 4),
        "n_distinct_prefixes": int(len(counts)),
        "largest_collision_group": int(counts.max()),
        "items_in_collisions": int(counts[counts > 1].sum()),
    }


def category_agreement(first_codes, categories):
    """Pairwise agreement on category within first-level code groups vs. across all items.

    first_codes: list/1-d tensor of codes; categories: list of str ('' = unknown, skipped).
    agreement = P(same category | two distinct items share the first code)
    chance    = P(same category | two distinct random items)
    """
    pairs = [(int(c), cat) for c, cat in zip(first_codes, categories) if cat]
    if len(pairs) < 2:
        return None

    def same_pairs(counter):
        return sum(v * (v - 1) for v in counter.values())

    by_code = Counter(c for c, _ in pairs)
    by_code_cat = Counter(pairs)
    by_cat = Counter(cat for _, cat in pairs)
    n = len(pairs)
    within = same_pairs(by_code)
    return {
        "agreement": round(same_pairs(by_code_cat) / within, 4) if within else None,
        "chance": round(same_pairs(by_cat) / (n * (n - 1)), 4),
        "n_items": n,
        "n_categories": len(by_cat),
    }


def format_stats(stats):
    """Human-readable multi-line summary of an artifact's stats."""
    lines = [
        f"items: {stats['n_items']} (without text: {stats['n_items_without_text']}), "
        f"encoder: {stats['encoder']} ({stats['embedding_dim']}-d), quantizer: {stats['quantizer']}",
        f"codebook sizes: {stats['codebook_sizes']} (dedup: {stats['dedup']})",
    ]
    for level, (u, p) in enumerate(zip(stats["usage"], stats["perplexity"])):
        lines.append(f"  level {level + 1}: usage {u:.1%}  perplexity {p:.1f}")
    lines.append(
        f"unique {stats['n_quantized_levels']}-code prefix: {stats['unique_prefix_rate']:.2%} of items "
        f"({stats['n_distinct_prefixes']} distinct), largest collision group {stats['largest_collision_group']}, "
        f"unique full ID: {stats['unique_id_rate']:.2%}"
    )
    if stats.get("recon_mse") is not None:
        lines.append(f"reconstruction MSE (standardised embeddings): {stats['recon_mse']:.4f}")
    for name, agree in (stats.get("category_agreement") or {}).items():
        if agree and agree["agreement"] is not None:
            lines.append(
                f"{name}: items sharing the first code agree {agree['agreement']:.1%} "
                f"vs chance {agree['chance']:.1%} ({agree['n_categories']} categories)"
            )
    t = stats.get("seconds", {})
    lines.append("wall time: " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items()))
    return "\n".join(lines)
