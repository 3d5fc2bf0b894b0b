"""TIGER's rankings: the bodies behind ``predict``, ``full_sort_predict`` and ``full_sort_topk``.

Each groups users by history length (``model.length_buckets``), encodes a group once and walks
the prefix trie with :class:`IncrementalDecoding` (``beam_search``): beam search or exact
scoring of every ID, or the given candidates' IDs. ID scores (plus the popularity prior, if
any) then go to the ID's items, ordered among items sharing an ID by the tie-break
(``item_scoring``). ``model`` is the TIGER; these functions read its tables and settings.
"""
import torch

from . import item_scoring
from .beam_search import constrained_beam_search, exact_leaf_scores, given_id_scores
from .history_encoding import BOS, N_SPECIAL


class IncrementalDecoding:
    """Adapter between the TIGER decoder and the trie walks in ``beam_search``: turns the codes
    chosen at the previous level into decoder input and returns next-level log-probs."""

    def __init__(self, model, memory, mask):
        self.model = model
        self.memory = memory                                                # [B, S, D] (the dense head reads it too)
        self.batch_size = memory.shape[0]
        self.cache = model.decoder.start(memory, mask)

    def step(self, codes, level):
        m = self.model
        if codes is None:                                                    # level 0: BOS
            tokens = torch.full((self.batch_size, 1), BOS, dtype=torch.long, device=m.item_codes.device)
        else:
            tokens = codes + m.level_offset[level - 1] + N_SPECIAL           # [B, W]
        x = m.token_embedding(tokens) + m.decoder_position_embedding.weight[level]
        return m.level_log_probs(m.decoder.step(x, self.cache), level)       # [B, W, K_level]

    def reorder(self, parent):
        self.cache.reorder(parent)


def start_decoding(model, item_seq, item_seq_len, user_id):
    """Encode a group of histories once and return their decoder.  item_seq [B, n]"""
    memory, mask = model.encode(item_seq, item_seq_len, user_id)
    return IncrementalDecoding(model, memory, mask)


def tie_break(model, item_seq, item_seq_len):
    """None when IDs are unique (collision level), else items [B, ...] -> [B, ...] in [0, 1),
    higher = ranked first among items sharing an ID."""
    if not model.use_tie_break:
        return None
    if model.settings.tie_break == "popularity":
        return lambda items: item_scoring.popularity_tie_break(model.item_train_count, items)
    return lambda items: item_scoring.cosine_tie_break(model.item_text_emb, items, item_seq, item_seq_len)


def node_bias(model):
    prior = model.popularity_prior()
    return None if prior is None else prior.node_bias


def beam(model, decoder, item_seq):
    """Constrained beam search for one group of users (their full histories ``item_seq``).
    With eval_exclude_history, beams never end on an ID whose items are all in the history:
    masking them afterwards would leave fewer than K ranked items (and torch.topk fills the
    gap with the lowest item ids, which can fake hits).  -> leaf [B, W], score [B, W]"""
    s = model.settings
    banned = model.trie.leaves_within(item_seq, model.n_items) if s.eval_exclude_history else None
    return constrained_beam_search(decoder, model.trie, len(item_seq), s.beam_size, item_seq.device,
                                   banned_leaf=banned, node_bias=node_bias(model))


def exact_users_per_chunk(trie):
    """Users per exact-scoring call: bounds the widest level's [users, N_l, K_l] log-probs to ~2^24 floats."""
    widest = max(trie.child(l).numel() for l in range(trie.n_levels))
    return max(1, 2**24 // widest)


@torch.no_grad()
def predict_scores(model, item_seq, seq_len, user, item):
    """Exact teacher-forced log-likelihood of each (history, candidate item) row [R]; rows of the
    same history share one encoder pass (RecBole repeats a user for each candidate)."""
    key = torch.cat([user[:, None], seq_len[:, None], item_seq], dim=1)
    unique_key, candidates, group, slot = item_scoring.candidates_by_history(key, item)
    u_user, u_len, u_seq = unique_key[:, 0], unique_key[:, 1], unique_key[:, 2:]
    scores = torch.empty(candidates.shape, device=item.device)              # [U, W]
    for idx, n in model.length_buckets(u_len):
        decoder = start_decoding(model, u_seq[idx, :n], u_len[idx], u_user[idx])
        scores[idx] = given_id_scores(decoder, model.item_codes[candidates[idx]])
    prior = model.popularity_prior()
    if prior is not None:  # the whole path's bias of each candidate's ID
        scores = scores + prior.leaf_bias[model.trie.item_leaf[candidates]]
    row_score = scores[group, slot]                                         # [R]
    order = tie_break(model, item_seq, seq_len)
    if order is not None:
        row_score = item_scoring.lexicographic(row_score, order(item[:, None])[:, 0])
    return row_score


@torch.no_grad()
def full_sort_scores(model, item_seq, seq_len, user, states=None):
    """[B, n_items] scores: generated items by ID log-probability (beam or exact), all others -inf.
    ``states`` [B, D]: filled with each history's last-item encoder state from the same encoder pass
    (the dense head's input), so a fused ranking encodes every history once."""
    exact = model.settings.eval_mode == "exact"
    out = None
    for bucket, n in model.length_buckets(seq_len):
        # exact mode: a bucket's [users, N_l, K_l] log-probs can be large; split further
        for idx in bucket.split(exact_users_per_chunk(model.trie)) if exact else [bucket]:
            decoder = start_decoding(model, item_seq[idx, :n], seq_len[idx], user[idx])
            if states is not None:
                states[idx] = model.last_item_state(decoder.memory, seq_len[idx]).to(states.dtype)
            if exact:
                score = exact_leaf_scores(decoder, model.trie, len(idx), node_bias=node_bias(model))
                leaf = torch.arange(score.shape[1], device=score.device).expand_as(score)
            else:
                leaf, score = beam(model, decoder, item_seq[idx])
            scores = item_scoring.spread_over_items(leaf, score, model.trie.leaf_items, model.n_items,
                                                    tie_break(model, item_seq[idx], seq_len[idx]))
            if out is None:
                out = scores.new_empty(len(item_seq), model.n_items)
            out[idx] = scores
    return out


@torch.no_grad()
def full_sort_topk(model, item_seq, seq_len, user, k):
    """The top-``k`` items per user and their scores, ranked as ``full_sort_scores`` ranks them in
    beam mode, without its [B, n_items] matrix.  -> values [B, k] (-inf where fewer), item ids [B, k]"""
    if model.settings.eval_mode != "beam":
        raise ValueError("TIGER: eval_output=topk needs eval_mode=beam (exact mode scores every item).")
    values = torch.full((len(item_seq), k), float("-inf"), dtype=torch.float64, device=item_seq.device)
    indices = torch.zeros(len(item_seq), k, dtype=torch.long, device=item_seq.device)
    for idx, n in model.length_buckets(seq_len):
        decoder = start_decoding(model, item_seq[idx, :n], seq_len[idx], user[idx])
        leaf, score = beam(model, decoder, item_seq[idx])
        items = model.trie.leaf_items[leaf.clamp(min=0)]                     # [b, W, G], 0 = none
        item_score = score.unsqueeze(-1).expand(items.shape)
        order = tie_break(model, item_seq[idx], seq_len[idx])
        if order is not None:
            item_score = item_scoring.lexicographic(item_score, order(items))
        valid = (items > 0) & (leaf >= 0).unsqueeze(-1)
        item_score = torch.where(valid, item_score.double(), float("-inf")).flatten(1)
        top = item_score.topk(min(k, item_score.shape[1]), dim=1)
        values[idx, : top.values.shape[1]] = top.values
        indices[idx, : top.values.shape[1]] = items.flatten(1).gather(1, top.indices)
    return values, indices
