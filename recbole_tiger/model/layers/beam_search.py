"""Decoding semantic IDs against a :class:`PrefixTrie`: constrained beam search, exact scoring
of every ID, and scoring of given IDs.

All three walk the ID one level at a time with a ``decoder`` object that has
  ``step(codes [B, W] | None, level) -> log-probs [B, W, K_level]``  (extend W prefixes by one
      code; ``codes`` are the codes chosen at level-1, ``None`` at level 0 = BOS only)
  ``reorder(parent [B, W'])``  (new prefix j continues old prefix parent[:, j]: keep its cache)
Everything is batched over users and prefixes; the only Python loop is over the n_levels steps.
"""
from typing import List, Optional, Tuple

import torch

from .prefix_trie import PrefixTrie


@torch.no_grad()
def constrained_beam_search(decoder, trie: PrefixTrie, batch_size: int, beam_size: int,
                            device, banned_leaf: Optional[torch.Tensor] = None,
                            node_bias: Optional[List[torch.Tensor]] = None
                            ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top ``beam_size`` complete IDs per user by sequence log-probability.

    Invalid continuations are masked to -inf before each top-k, so every finite beam is a
    real item ID. If a level has fewer valid prefixes than ``beam_size`` the surplus beams
    are "dead": score -inf, leaf -1. ``banned_leaf`` [B, N_leaves] (bool) additionally
    excludes complete IDs (e.g. items the evaluator will mask anyway), and with them every
    prefix all of whose IDs are banned, so a beam is never spent on a prefix that can only
    end banned: as long as the trie has ``beam_size`` allowed IDs, all beams end on one.
    ``node_bias[l]`` [N_{l+1}] is added to the score of each depth-(l+1) node when it is reached
    (e.g. a popularity penalty that telescopes along the path).

    Returns leaf [B, W] (trie leaf index or -1) and score [B, W] (descending per row).
    """
    dead = None if banned_leaf is None else _dead_nodes(trie, banned_leaf)
    node = torch.zeros(batch_size, 1, dtype=torch.long, device=device)      # [B, W] trie nodes
    score = torch.zeros(batch_size, 1, device=device)                        # [B, W]
    codes = None
    for level in range(trie.n_levels):
        logp = decoder.step(codes, level)                                     # [B, W, K]
        child = trie.child(level)[node.clamp(min=0)]                         # [B, W, K]
        allowed = child >= 0
        if dead is not None:
            allowed &= ~dead[level].gather(1, child.clamp(min=0).flatten(1)).view_as(child)
        if node_bias is not None:
            logp = logp + node_bias[level][child.clamp(min=0)]
        cand = torch.where(allowed, score.unsqueeze(-1) + logp, float("-inf"))
        n_keep = min(beam_size, cand.shape[1] * cand.shape[2])
        score, flat = cand.flatten(1).topk(n_keep, dim=1)                    # [B, W']
        node = child.flatten(1).gather(1, flat)
        node = torch.where(torch.isfinite(score), node, -1)                  # dead beams
        codes = flat % cand.shape[2]
        if level + 1 < trie.n_levels:                                         # last step: no reuse
            decoder.reorder(flat // cand.shape[2])
    return node, score


def _dead_nodes(trie: PrefixTrie, banned_leaf: torch.Tensor):
    """Per level l, [B, N_{l+1}] bool: nodes of depth l+1 none of whose leaves is allowed
    (the last entry is ``banned_leaf`` itself)."""
    dead = [banned_leaf]
    for level in range(trie.n_levels - 1, 0, -1):
        parent = trie.parent(level)                                          # [N_{l+1}] -> depth l
        alive = torch.zeros(len(banned_leaf), trie.n_nodes(level), device=banned_leaf.device)
        alive.index_add_(1, parent, (~dead[0]).float())
        dead.insert(0, alive == 0)
    return dead


@torch.no_grad()
def exact_leaf_scores(decoder, trie: PrefixTrie, batch_size: int,
                      node_bias: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
    """Exact log-probability of *every* valid ID: level by level over all valid prefixes.

    Cost is sum_l N_l decoder tokens per user (vs ~beam_size * n_levels for beam search), so
    callers chunk users. Returns [B, N_leaves].
    """
    score = None                                                              # [B, N_l]
    codes = None
    for level in range(trie.n_levels):
        logp = decoder.step(codes, level)                                     # [B, N_l, K_l]
        parent, code = trie.parent(level), trie.last_code(level)              # [N_{l+1}]
        step_score = logp[:, parent, code]                                    # [B, N_{l+1}]
        if node_bias is not None:
            step_score = step_score + node_bias[level]
        score = step_score if score is None else score[:, parent] + step_score
        codes = code.expand(batch_size, -1)
        if level + 1 < trie.n_levels:
            decoder.reorder(parent.expand(batch_size, -1))
    return score


@torch.no_grad()
def given_id_scores(decoder, codes: torch.Tensor) -> torch.Tensor:
    """Teacher-forced log-probability of given IDs, W candidates per user sharing its encoder
    memory.  codes [B, W, L] (all valid codes) -> [B, W]"""
    score = 0.0
    for level in range(codes.shape[2]):
        logp = decoder.step(None if level == 0 else codes[:, :, level - 1], level)
        if level == 0:                                                        # [B, 1, K]: BOS only
            logp = logp.expand(-1, codes.shape[1], -1)
            if codes.shape[1] > 1:                                            # all W share BOS
                decoder.reorder(torch.zeros_like(codes[:, :, 0]))
        score = score + logp.gather(2, codes[:, :, level : level + 1]).squeeze(2)
    return score
