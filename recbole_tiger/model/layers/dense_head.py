"""``dense_head: True``: TIGER's encoder also yields a dense user vector scored against every item.

An item's dense vector is the sum of the features named in ``dense_item_features``:
  codes  the sum of its semantic-ID code embeddings (TIGER's own token embeddings, shared)
  id     an embedding of its own item id (what SASRec scores with); an item with no training
         interaction (a cold item) is represented by its other features only
  text   a learned projection of its text embedding (the one its semantic ID was built from)
The user vector is the encoder state of the most recent history item, projected. Scores are
cosine similarities over a temperature, trained with full-softmax cross-entropy next to the ID
loss (LIGER, Yang et al. 2024); items without a training interaction are no negatives. At
ranking time the dense log-softmax over every item is fused with the generative scores:
``dense + fusion_weight * generative``, where an item outside the beam gets its user's lowest
beam score (weight 0 = the dense ranking alone), plus ``text_fusion_weight`` x the cosine of the
item's text with the history's (layers/text_similarity.py) over the dense temperature.
``cold_candidates: True`` is LIGER's cold-start rule: only the beam's items and the items without
a training interaction are ranked, by the dense (and text) score alone.
"""
import torch
import torch.nn.functional as F
from torch import nn

from . import id_ranking, text_similarity
from .history_encoding import N_SPECIAL, PAD

FEATURES = ("codes", "id", "text")


class DenseHead(nn.Module):
    def __init__(self, *, d_model, n_items, features, temperature, text_embeddings=None):
        super().__init__()
        unknown = sorted(set(features) - set(FEATURES))
        if unknown or not features:
            raise ValueError(f"TIGER: dense_item_features={list(features)}, expected a non-empty subset of {FEATURES}.")
        if "text" in features and text_embeddings is None:
            raise ValueError("TIGER: dense_item_features has text, but the semantic-ID artifact has no item "
                             "text embeddings; rebuild it or drop text.")
        self.features = tuple(features)
        self.temperature = float(temperature)
        self.user_proj = nn.Linear(d_model, d_model)
        self.id_embedding = nn.Embedding(n_items, d_model, padding_idx=0) if "id" in features else None
        self.text_proj = None
        if "text" in features:
            # rebuilt from the artifact with the model, so checkpoints do not carry it
            self.register_buffer("text_embeddings", text_embeddings.float().clone(), persistent=False)  # [n_items, d_t]
            self.text_proj = nn.Linear(text_embeddings.shape[1], d_model, bias=False)

    def item_vectors(self, token_embedding, item_codes, level_offset, unseen=None):
        """[n_items, D] unit item vectors (row 0, padding, is never a target). ``unseen`` [n_items]
        bool: items without a training interaction, whose id embedding was only ever pushed away
        as a negative; with another feature they are represented without it."""
        parts = []
        if "codes" in self.features:
            tokens = torch.where(item_codes >= 0, item_codes + level_offset + N_SPECIAL, PAD)   # [n_items, L]
            parts.append(token_embedding(tokens).sum(1))
        if self.text_proj is not None:
            parts.append(self.text_proj(self.text_embeddings))
        if self.id_embedding is not None:
            ids = self.id_embedding.weight
            if parts and unseen is not None:
                ids = torch.where(unseen[:, None], 0.0, ids)
            parts.append(ids)
        return F.normalize(torch.stack(parts).sum(0), dim=-1)

    def logits(self, states, items):
        """states [B, D] (encoder states), items [n_items, D] unit vectors -> [B, n_items] cosine / temperature"""
        users = F.normalize(self.user_proj(states), dim=-1)
        return users @ items.T / self.temperature

    def loss(self, logits, target_items, unseen=None):
        """Full-softmax cross-entropy of the target items.  logits [B, n_items], target_items [B];
        ``unseen`` [n_items] bool: items without a training interaction, never a target, are not
        negatives either (else every step pushes them away from every user, cold items included)."""
        logits = logits.float().clone()
        logits[:, 0] = float("-inf")                                              # the padding item
        if unseen is not None:
            logits[:, unseen] = float("-inf")
        return F.cross_entropy(logits, target_items)


def fuse(generative, dense_logp, weight):
    """``dense_logp + weight * generative`` per item; an item the beam did not generate (-inf)
    gets its user's lowest generated score.  generative, dense_logp [B, n_items] -> [B, n_items]"""
    if weight == 0.0:
        return dense_logp
    finite = torch.isfinite(generative)
    floor = torch.where(finite, generative, float("inf")).amin(1, keepdim=True)          # [B, 1]
    floor = torch.where(torch.isfinite(floor), floor, 0.0)                                # no beam at all
    return dense_logp + weight * torch.where(finite, generative, floor)


# ---------------------------------------------------------------------- TIGER's use of the head
def item_logits(model, states):
    """states [B, D] -> [B, n_items] float32 dense scores of every item (``model`` is the TIGER;
    an output head, so outside bf16 autocast like its code logits)."""
    head = model.dense_head
    with torch.autocast(states.device.type, enabled=False):
        items = head.item_vectors(model.token_embedding, model.item_codes, model.level_offset,
                                  unseen=model.item_train_count == 0)
        return head.logits(states.float(), items)


def dense_loss(model, states, target_items):
    return model.dense_head.loss(item_logits(model, states), target_items, unseen=model.item_train_count == 0)


def text_term(model, item_seq, item_seq_len):
    """[B, n_items] ``text_fusion_weight`` x cosine(item text, history text) / dense temperature.
    A history item is always close to its own history, which says nothing about buying it again,
    so history items (and padding) get the user's lowest score: neither promoted nor removed."""
    s = model.settings
    cos = text_similarity.history_vectors(model.item_text_emb, item_seq, item_seq_len,
                                          decay=s.text_nn_decay) @ model.item_text_emb.T     # [B, n_items]
    in_history = text_similarity.history_mask(item_seq, model.n_items)
    floor = torch.where(in_history, float("inf"), cos).amin(1, keepdim=True)                # [B, 1]
    return s.text_fusion_weight / s.dense_temperature * torch.where(in_history, floor, cos)


def encoded_states(model, item_seq, item_seq_len, user):
    """[B, D] each history's last-item encoder state (the dense head's input)."""
    states = torch.empty(len(item_seq), model.settings.d_model, device=item_seq.device)
    for idx, n in model.length_buckets(item_seq_len):
        memory, _ = model.encode(item_seq[idx, :n], item_seq_len[idx], user[idx])
        states[idx] = model.last_item_state(memory, item_seq_len[idx]).float()      # [b, D]
    return states


@torch.no_grad()
def log_probs(model, item_seq, item_seq_len, user):
    """[B, n_items] the dense log-softmax over every item (padding item -inf)."""
    return log_softmax_over_items(model, encoded_states(model, item_seq, item_seq_len, user))


def log_softmax_over_items(model, states):
    """states [B, D] -> [B, n_items] dense log-softmax (padding item -inf)."""
    logits = item_logits(model, states).float()
    logits[:, 0] = float("-inf")
    return logits.log_softmax(-1)


@torch.no_grad()
def fused_full_sort(model, item_seq, item_seq_len, user):
    """[B, n_items]: dense log-softmax + fusion_weight x the beam's (or exact) ID scores
    (+ the text term); each history is encoded once for both. With ``cold_candidates``: the
    beam's items and the items without training interactions by dense (+ text) score, others -inf."""
    s = model.settings
    needs_beam = s.fusion_weight != 0.0 or s.cold_candidates
    states = torch.empty(len(item_seq), s.d_model, device=item_seq.device)
    if needs_beam:
        generative = id_ranking.full_sort_scores(model, item_seq, item_seq_len, user, states=states)
    else:
        states = encoded_states(model, item_seq, item_seq_len, user)
    dense = log_softmax_over_items(model, states)
    if s.text_fusion_weight != 0.0:
        dense = dense + text_term(model, item_seq, item_seq_len)
    if s.cold_candidates:
        candidates = torch.isfinite(generative) | (model.item_train_count == 0)[None]
        candidates[:, 0] = False
        return torch.where(candidates, dense, float("-inf"))
    return fuse(generative, dense, s.fusion_weight) if needs_beam else dense


@torch.no_grad()
def fused_rows(model, item_seq, item_seq_len, user, item, generative):
    """Sampled evaluation: each (history, candidate) row's dense log-prob (+ text term) +
    fusion_weight x its exact ID log-likelihood ``generative`` [R] (every candidate is scored,
    so ``cold_candidates`` does not apply)."""
    dense = log_probs(model, item_seq, item_seq_len, user)
    if model.settings.text_fusion_weight != 0.0:
        dense = dense + text_term(model, item_seq, item_seq_len)
    return dense.gather(1, item[:, None])[:, 0] + model.settings.fusion_weight * generative
