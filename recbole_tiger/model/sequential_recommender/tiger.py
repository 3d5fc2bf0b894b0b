# -*- coding: utf-8 -*-
"""
TIGER
################################################

Reference:
    Shashank Rajput et al. "Recommender Systems with Generative Retrieval." in NeurIPS 2023.

An encoder–decoder reads a user's history as a sequence of semantic-ID codes and generates the
next item's semantic ID code by code. Ranking = beam search over IDs, constrained to IDs that
exist (a prefix trie of every item of the dataset, including items never seen in training).

Sequences (L = number of semantic-ID levels, N = MAX_ITEM_LIST_LENGTH):
  encoder  [user token] + codes of the history items, oldest first   -> 1 + N*L tokens
           (``encoder_tokens: item``: one token per item, the sum of its code embeddings
           -> 1 + N tokens, ~L times less encoder work)
  decoder  [BOS, c_1, ..., c_{L-1}] -> predicts [c_1, ..., c_L], causal

Training targets (``train_targets``):
  last  one target per RecBole training row (paper): every prefix of a user's sequence is
        its own example, so a history is re-encoded once per later item;
  all   one pass per sequence, as SASRec trains: a causal encoder (item t sees items <= t)
        reads a row's history and target once, and one short decoder sequence per next item
        cross-attends to the encoder states up to its own prefix. Only every S-th row of a
        user (counted from its last, S = ``sequence_stride``) is used; it trains its last S
        targets, so every training target is still learned once per epoch, with ~S times
        fewer encoder passes. Needs ``encoder_tokens: item``.

Implementation choice: our own small T5-style transformer on ``F.scaled_dot_product_attention``
rather than ``transformers.T5ForConditionalGeneration``. Measured at paper size, batch 256,
1 CPU thread: with every history at 20 items a training step takes 13.7 s here vs 13.3 s for
HF T5 (a tie), but our encoder pads each length bucket only to its own longest history, which
on Beauty's real training-row lengths (mean 6.7 items) makes a step 4.6 s. And beam search
needs a decoder that shares one user's encoder memory across all its beams and applies trie
masks between steps; HF ``generate`` runs every (user x beam) row through the full decoder
and constrains through a per-row Python callback.

``backbone: t5`` swaps our encoder/decoder for ``transformers``' ``T5Stack`` at the same sizes
and with the same inputs (see ``layers/t5_backbone.py``), to check that ours learns as well.

Positions: learned embeddings for "which item of the history, counted from the most recent"
and "which level of the ID" instead of T5's relative position bias over the flat token
sequence. The input has exactly that 2-D structure, the embeddings state it directly, and
they leave attention bias-free so SDPA runs its fused kernel.
"""
import logging

import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_tiger.data.dataset import USER_ROW_FIELD, USER_ROWS_FIELD
from recbole_tiger.model.layers import item_scoring
from recbole_tiger.model.layers.beam_search import (
    constrained_beam_search,
    exact_leaf_scores,
    given_id_scores,
)
from recbole_tiger.model.layers.prefix_trie import PrefixTrie
from recbole_tiger.model.layers.transformer import Decoder, Encoder
from recbole_tiger.model.tiger_settings import TIGERSettings

PAD, BOS = 0, 1
N_SPECIAL = 2  # code tokens start after PAD and BOS; user-hash tokens follow the code tokens


def hash_user(user_id: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Deterministic user bucket: Knuth's multiplicative hash, so neighbouring RecBole ids
    (assigned in order of first appearance) do not land in neighbouring buckets."""
    return (user_id.long() * 2654435761) % (2**32) % n_buckets


class TIGER(SequentialRecommender):
    r"""Generative retrieval over semantic IDs (see module docstring).

    Needs the item-side tables of :class:`~recbole_tiger.data.dataset.TIGERDataset`
    (``semantic_ids``, ``item_train_count``); ``semantic_ids=`` overrides the dataset's (tests).
    """

    input_type = InputType.POINTWISE  # one (history, target) row at a time, no negatives

    def __init__(self, config, dataset, semantic_ids=None):
        super(TIGER, self).__init__(config, dataset)
        self.logger = logging.getLogger()
        self.settings = s = TIGERSettings.from_config(config, self.max_seq_length)
        if semantic_ids is None:
            semantic_ids = getattr(dataset, "semantic_ids", None)
        if semantic_ids is None or getattr(dataset, "item_train_count", None) is None:
            raise ValueError(
                f"TIGER needs the item-side tables of TIGERDataset (semantic IDs, training counts); got a "
                f"{type(dataset).__name__}. Create the dataset with recbole_tiger.utils.create_dataset "
                "(run_recbole_tiger.py and recbole_tiger.quick_start do), not recbole.data.create_dataset."
            )
        semantic_ids.validate(self.n_items)
        self.codebook_sizes = [int(k) for k in semantic_ids.codebook_sizes]
        self.n_levels = len(self.codebook_sizes)
        self.dedup = bool(semantic_ids.dedup)
        self.artifact_key = semantic_ids.artifact_key
        self.artifact_path = semantic_ids.artifact_path

        # The code table and training counts travel with the checkpoint (persistent buffers),
        # so a saved model decodes and breaks ties exactly as it did even if the artifact on
        # disk is rebuilt later.
        self.register_buffer("item_codes", semantic_ids.codes.long().clone())            # [n_items, L]
        self.register_buffer("item_train_count", dataset.item_train_count.long().clone())  # [n_items]
        self.use_tie_break = not self.dedup
        if self.use_tie_break and s.tie_break == "cosine":
            if semantic_ids.item_embeddings is None:
                raise ValueError(
                    "TIGER: tie_break=cosine needs SemanticIDs.item_embeddings (the items' text "
                    f"embeddings), but the artifact {semantic_ids.artifact_path} has none; "
                    "use tie_break: popularity or rebuild the artifact."
                )
            emb = F.normalize(semantic_ids.item_embeddings.float(), dim=-1)
            self.register_buffer("item_text_emb", emb.clone())                      # [n_items, d]

        sizes = torch.tensor(self.codebook_sizes)
        level_offset = torch.cumsum(sizes, 0) - sizes                              # [L]
        self.n_code_tokens = int(sizes.sum())
        self.register_buffer("level_offset", level_offset, persistent=False)
        # 0 where code token v belongs to level l, -inf elsewhere: per-level softmax in one op
        code_level = torch.repeat_interleave(torch.arange(self.n_levels), sizes)   # [V_code]
        level_mask = torch.where(code_level[None] == torch.arange(self.n_levels)[:, None], 0.0, float("-inf"))
        self.register_buffer("level_mask", level_mask, persistent=False)           # [L, V_code]
        self.trie = PrefixTrie(self.item_codes, self.codebook_sizes)
        self.register_load_state_dict_post_hook(TIGER._rebuild_trie_after_load)

        # define layers
        vocab_size = N_SPECIAL + self.n_code_tokens + s.n_user_tokens
        self.token_embedding = nn.Embedding(vocab_size, s.d_model, padding_idx=PAD)
        # index max_seq_length / n_levels mark the user token
        self.item_position_embedding = nn.Embedding(self.max_seq_length + 1, s.d_model)
        self.level_embedding = nn.Embedding(self.n_levels + 1, s.d_model)
        self.decoder_position_embedding = nn.Embedding(self.n_levels, s.d_model)
        # ``item_id_embedding``: history items also carry an embedding of their own id (input side
        # only; the output stays semantic IDs). Codes are shared by similar items; an item's own
        # vector lets rarely seen items keep what their own interactions say.
        self.item_embedding = nn.Embedding(self.n_items, s.d_model, padding_idx=0) if s.item_id_embedding else None
        sizes = dict(d_model=s.d_model, n_heads=s.n_heads, d_head=s.d_head, d_ff=s.d_ff, dropout=s.dropout_prob)
        if s.backbone == "t5":
            # T5 has one dropout rate, attention weights included: attn_dropout_prob is unused.
            from recbole_tiger.model.layers.t5_backbone import T5Decoder, T5Encoder

            self.encoder = T5Encoder(n_layers=s.n_encoder_layers, **sizes)
            self.decoder = T5Decoder(n_layers=s.n_decoder_layers, **sizes)
        else:
            self.encoder = Encoder(n_layers=s.n_encoder_layers, attn_dropout=s.attn_dropout_prob, **sizes)
            self.decoder = Decoder(n_layers=s.n_decoder_layers, attn_dropout=s.attn_dropout_prob, **sizes)
        # Output layer over code tokens: its own matrix, or (``tie_code_embeddings``) the code
        # tokens' input embeddings, as T5 and GRID's TIGER tie them. No d_model**-0.5 rescaling
        # as in T5: that goes with T5's std-1 embeddings; ours start at initializer_range, where
        # the rescaled logits were 10x smaller than an untied head's and learning started late.
        self.code_head = None if s.tie_code_embeddings else nn.Linear(s.d_model, self.n_code_tokens, bias=False)

        # parameters initialization
        for name, module in self.named_children():
            # The T5 backbone keeps T5's own initialisation (done when it was built): T5 does not
            # scale attention logits by 1/sqrt(d_head) and relies on its d_model**-0.5-style
            # init for sane logits; our uniform std would make a different, untuned model.
            if not (s.backbone == "t5" and name in ("encoder", "decoder")):
                module.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.settings.initializer_range)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()

    # ------------------------------------------------------------------ checkpoints
    def get_extra_state(self):
        return {
            "codebook_sizes": self.codebook_sizes,
            "dedup": self.dedup,
            "artifact_key": self.artifact_key,
            "artifact_path": self.artifact_path,
        }

    def set_extra_state(self, state):
        if list(state["codebook_sizes"]) != self.codebook_sizes or state["dedup"] != self.dedup:
            raise ValueError(
                f"TIGER checkpoint has semantic IDs with codebook_sizes={state['codebook_sizes']}, "
                f"dedup={state['dedup']}, but this model was built with {self.codebook_sizes}, "
                f"dedup={self.dedup} (artifact {self.artifact_path}); build the model with the "
                "checkpoint's semantic-ID settings."
            )
        if state["artifact_key"] != self.artifact_key:
            self.logger.warning(
                f"TIGER checkpoint was trained with semantic-ID artifact key {state['artifact_key']} "
                f"({state['artifact_path']}), the current artifact has key {self.artifact_key} "
                f"({self.artifact_path}); decoding uses the code table stored in the checkpoint."
            )
            self.artifact_key, self.artifact_path = state["artifact_key"], state["artifact_path"]

    @staticmethod
    def _rebuild_trie_after_load(module, incompatible_keys):
        module.trie.build(module.item_codes)
        module._popularity_bias_cache = None  # the loaded training counts may differ

    # ------------------------------------------------------------------ encoder / decoder
    def encode(self, item_seq, item_seq_len, user_id):
        """item_seq [B, N] (left-aligned, 0-padded) -> memory [B, S, D], key mask [B, S]"""
        if self.settings.encoder_tokens == "item":
            return self._encode_items(item_seq, item_seq_len, user_id)
        B, N = item_seq.shape
        L = self.n_levels
        codes = self.item_codes[item_seq]                                   # [B, N, L], -1 = pad
        real = codes >= 0
        tokens = torch.where(real, codes + self.level_offset + N_SPECIAL, PAD).flatten(1)
        steps = torch.arange(N, device=item_seq.device)
        recency = (item_seq_len[:, None] - 1 - steps).clamp(min=0)         # 0 = most recent item
        position = recency.repeat_interleave(L, dim=1)                      # [B, N*L]
        level = torch.arange(L, device=item_seq.device).repeat(N)           # [N*L]
        x = (self.token_embedding(tokens) + self.item_position_embedding(position)
             + self.level_embedding(level))                                 # [B, N*L, D]
        if self.item_embedding is not None:                                 # each code token of an item
            x = x + self.item_embedding(item_seq).repeat_interleave(L, dim=1)
        x, mask = self._prepend_user(x, real.flatten(1), user_id)          # [B, 1+N*L, D]
        return self.encoder(x, mask), mask

    def _prepend_user(self, x, mask, user_id):
        """[B, S, D], [B, S] -> user token first: [B, 1+S, D], [B, 1+S] (if n_user_tokens > 0)"""
        if self.settings.n_user_tokens == 0:
            return x, mask
        user_token = N_SPECIAL + self.n_code_tokens + hash_user(user_id, self.settings.n_user_tokens)
        u = (self.token_embedding(user_token) + self.item_position_embedding.weight[-1]
             + self.level_embedding.weight[-1])                             # [B, D]
        return torch.cat([u[:, None], x], dim=1), torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)

    def _encode_items(self, item_seq, item_seq_len, user_id):
        """One encoder token per history item: the sum of its code-token embeddings (codes of
        different levels are different tokens, so the sum keeps the level) plus its position.
        item_seq [B, N] -> memory [B, 1+N, D], key mask [B, 1+N]"""
        N = item_seq.shape[1]
        codes = self.item_codes[item_seq]                                   # [B, N, L], -1 = pad
        tokens = torch.where(codes >= 0, codes + self.level_offset + N_SPECIAL, PAD)
        steps = torch.arange(N, device=item_seq.device)
        if self.settings.causal_encoder:
            # Absolute position from the oldest item: under a causal mask item t must not
            # know how many items follow it (recency would tell it).
            position = steps.expand(len(item_seq), N)
        else:
            position = (item_seq_len[:, None] - 1 - steps).clamp(min=0)     # 0 = most recent
        x = self.token_embedding(tokens).sum(2) + self.item_position_embedding(position)  # [B, N, D]
        if self.item_embedding is not None:
            x = x + self.item_embedding(item_seq)
        x, mask = self._prepend_user(x, item_seq > 0, user_id)
        return self.encoder(x, mask, causal=self.settings.causal_encoder), mask

    def forward(self, item_seq, item_seq_len, user_id, target_codes):
        """Teacher forcing. target_codes [B, L] -> per-level logits [B, L, V_code] (other
        levels' codes at -inf)."""
        memory, mask = self.encode(item_seq, item_seq_len, user_id)
        h = self.decoder(self._teacher_forced_input(target_codes), memory, mask)                                   # [B, L, D]
        return self.code_logits(h) + self.level_mask

    def _teacher_forced_input(self, target_codes):
        """Decoder input for teacher forcing: [BOS, c_1, ..., c_{L-1}] embedded with their
        decoder positions.  target_codes [B, L] -> [B, L, D]"""
        prev = target_codes[:, :-1] + self.level_offset[:-1] + N_SPECIAL    # [B, L-1]
        tokens = torch.cat([torch.full_like(prev[:, :1], BOS), prev], dim=1)
        return self.token_embedding(tokens) + self.decoder_position_embedding.weight

    def level_log_probs(self, h, level):
        """h [..., D] -> log-probs over level ``level``'s codes [..., K_level]"""
        start = int(self.level_offset[level])
        weight = self.code_weight()[start : start + self.codebook_sizes[level]]
        return F.log_softmax(h @ weight.T, dim=-1)

    def code_weight(self):
        """[V_code, D] output weights of the code tokens (tied: their input embeddings)."""
        if self.code_head is None:
            return self.token_embedding.weight[N_SPECIAL : N_SPECIAL + self.n_code_tokens]
        return self.code_head.weight

    def code_logits(self, h):
        """h [..., D] -> logits over all code tokens [..., V_code]"""
        return h @ self.code_weight().T

    def length_buckets(self, item_seq_len):
        """Row indices in buckets of ``length_bucket_size`` rows of similar history length, each
        with its longest history: the encoder then pads a bucket only to that length instead
        of MAX_ITEM_LIST_LENGTH (most training prefixes are short, so this is most of the
        encoder's work saved)."""
        order = torch.argsort(item_seq_len, descending=True, stable=True)
        buckets = order.split(self.settings.length_bucket_size)
        longest = item_seq_len[torch.stack([b[0] for b in buckets])].tolist()
        return list(zip(buckets, longest))

    # ------------------------------------------------------------------ RecBole API
    def calculate_loss(self, interaction):
        if self.settings.train_targets == "all":
            return self._sequence_loss(interaction)
        item_seq, seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        user = interaction[self.USER_ID]
        target = self.item_codes[interaction[self.POS_ITEM_ID]]            # [B, L]
        rows, logits = [], []
        for idx, n in self.length_buckets(seq_len):
            rows.append(idx)
            logits.append(self.forward(item_seq[idx, :n], seq_len[idx], user[idx], target[idx]))
        rows = torch.cat(rows)
        labels = target[rows] + self.level_offset                           # index in code space
        return self.code_loss(torch.cat(logits), labels)

    def _sequence_loss(self, interaction):
        """train_targets=all: cross-entropy over the targets of the windows anchored by this
        batch's anchor rows (other rows: nothing to do)."""
        windows, n_items, users, first = self._training_windows(interaction)
        if len(windows) == 0:  # no anchor row in this batch: a zero loss that still backprops
            return self.code_weight().sum() * 0.0
        logits, labels = [], []
        for idx, n in self.length_buckets(n_items):
            win = windows[idx, :n]                                           # [b, n] items
            history, target = win[:, :-1], win[:, 1:]                        # [b, T] each, T = n-1
            memory, _ = self.encode(history, n_items[idx] - 1, users[idx])   # [b, u+T, D]
            # Decode only the window's own targets (real items from its first trained one on).
            steps = torch.arange(1, n, device=win.device)
            row, t = ((target > 0) & (steps >= first[idx, None])).nonzero(as_tuple=True)  # [M] each
            codes = self.item_codes[target[row, t]]                          # [M, L]
            x = self._teacher_forced_input(codes)                            # [M, L, D]
            # target t (item t+1 of the window) sees the user token and encoder states 0..t
            u = int(self.settings.n_user_tokens > 0)
            sees = torch.arange(memory.shape[1], device=win.device) <= (t + u)[:, None]   # [M, S]
            h = self.decoder(x, memory, sees, memory_index=row)              # [M, L, D]
            logits.append(self.code_logits(h) + self.level_mask)             # [M, L, V]
            labels.append(codes + self.level_offset)
        return self.code_loss(torch.cat(logits), torch.cat(labels))

    def code_loss(self, logits, labels):
        """Mean cross-entropy of the target codes; logits [N, L, V] level-masked (-inf outside a
        level's codes), labels [N, L] in code space. With label_smoothing ε the target gets 1-ε
        and the level's own codes share ε uniformly (the other levels' codes, which the masked
        logits rule out, get nothing, so the loss stays finite)."""
        eps = self.settings.label_smoothing
        if eps == 0.0:
            return F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        logp = logits.float().log_softmax(-1)                                # [N, L, V]
        nll = -logp.gather(-1, labels[..., None]).squeeze(-1)               # [N, L]
        in_level = torch.isfinite(self.level_mask)                          # [L, V]
        uniform = -logp.masked_fill(~in_level, 0.0).sum(-1) / in_level.sum(-1)   # [N, L]
        return ((1.0 - eps) * nll + eps * uniform).mean()

    def _training_windows(self, interaction):
        """The windows trained by this batch: one per anchor row, its history followed by its
        target, up to N+1 items. Anchors are each user's rows k = T, T - S, T - 2S, ... (k = the
        row's rank among its user's T training rows, from TIGERDataset; S = ``sequence_stride``).
        A window trains its last S targets (all of them for a user's first window), so every
        target is trained once per epoch, with >= N - S + 1 items of context when the user
        has that many.

        Returns windows [W, N+1] (0-padded, oldest first), items per window [W] (>= 2), user [W],
        and the window position of its first trained target [W] (>= 1).
        """
        if USER_ROW_FIELD not in interaction or USER_ROWS_FIELD not in interaction:
            raise ValueError(f"TIGER: train_targets=all needs the training rows' {USER_ROW_FIELD} and "
                             f"{USER_ROWS_FIELD} columns, which TIGERDataset adds; got rows without them.")
        anchor = (interaction[USER_ROWS_FIELD] - interaction[USER_ROW_FIELD]) % self.settings.sequence_stride == 0
        user, item_seq = interaction[self.USER_ID][anchor], interaction[self.ITEM_SEQ][anchor]
        seq_len, target = interaction[self.ITEM_SEQ_LEN][anchor], interaction[self.POS_ITEM_ID][anchor]
        windows = torch.cat([item_seq, torch.zeros_like(item_seq[:, :1])], dim=1)   # [W, N+1]
        windows[torch.arange(len(windows), device=windows.device), seq_len] = target
        first = (seq_len + 1 - self.settings.sequence_stride).clamp(min=1)
        return windows, seq_len + 1, user, first

    def count_training_targets(self, interaction):
        """Targets one ``calculate_loss(interaction)`` learns from (for throughput accounting)."""
        if self.settings.train_targets == "all":
            _, n_items, _, first = self._training_windows(interaction)
            return int((n_items - first).sum())
        return len(interaction)

    @torch.no_grad()
    def predict(self, interaction):
        """Exact teacher-forced log-likelihood of each (history, candidate item) row; rows of
        the same history share one encoder pass (RecBole repeats a user for each candidate)."""
        item_seq, seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        user, item = interaction[self.USER_ID], interaction[self.ITEM_ID]
        key = torch.cat([user[:, None], seq_len[:, None], item_seq], dim=1)
        unique_key, candidates, group, slot = item_scoring.candidates_by_history(key, item)
        u_user, u_len, u_seq = unique_key[:, 0], unique_key[:, 1], unique_key[:, 2:]
        scores = torch.empty(candidates.shape, device=item.device)          # [U, W]
        for idx, n in self.length_buckets(u_len):
            decoder = self._start_decoding(u_seq[idx, :n], u_len[idx], u_user[idx])
            scores[idx] = given_id_scores(decoder, self.item_codes[candidates[idx]])
        bias = self.popularity_bias()
        if bias is not None:  # the whole path's bias of each candidate's ID
            scores = scores + bias[1][self.trie.item_leaf[candidates]]
        row_score = scores[group, slot]                                     # [R]
        if self.use_tie_break:
            tb = self._tie_break_score(item[:, None], item_seq, seq_len)[:, 0]
            row_score = item_scoring.lexicographic(row_score, tb)
        return row_score

    @torch.no_grad()
    def full_sort_predict(self, interaction):
        """[B, n_items] scores: generated items by ID log-probability, all others -inf."""
        item_seq, seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        user = interaction[self.USER_ID]
        out = None
        for bucket, n in self.length_buckets(seq_len):
            # exact mode: a bucket's [users, N_l, K_l] log-probs can be large; split further
            for idx in bucket.split(self._exact_users_per_chunk()) if self.settings.eval_mode == "exact" else [bucket]:
                decoder = self._start_decoding(item_seq[idx, :n], seq_len[idx], user[idx])
                if self.settings.eval_mode == "beam":
                    leaf, score = self._beam(decoder, item_seq[idx])
                else:
                    score = exact_leaf_scores(decoder, self.trie, len(idx), node_bias=self._node_bias())
                    leaf = torch.arange(score.shape[1], device=score.device).expand_as(score)
                scores = self._item_scores(leaf, score, item_seq[idx], seq_len[idx])
                if out is None:
                    out = scores.new_empty(len(item_seq), self.n_items)
                out[idx] = scores
        return out

    @torch.no_grad()
    def full_sort_topk(self, interaction, k):
        """The top-``k`` items per user and their scores, ranked as ``full_sort_predict`` ranks them,
        without its [B, n_items] score matrix (``eval_output: topk``: at catalogue sizes where
        that matrix is the cost).  -> values [B, k] (-inf where fewer), item ids [B, k]"""
        if self.settings.eval_mode != "beam":
            raise ValueError("TIGER: eval_output=topk needs eval_mode=beam (exact mode scores every item).")
        item_seq, seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        user = interaction[self.USER_ID]
        values = torch.full((len(item_seq), k), float("-inf"), dtype=torch.float64, device=item_seq.device)
        indices = torch.zeros(len(item_seq), k, dtype=torch.long, device=item_seq.device)
        for idx, n in self.length_buckets(seq_len):
            decoder = self._start_decoding(item_seq[idx, :n], seq_len[idx], user[idx])
            leaf, score = self._beam(decoder, item_seq[idx])
            items = self.trie.leaf_items[leaf.clamp(min=0)]                  # [b, W, G], 0 = none
            item_score = score.unsqueeze(-1).expand(items.shape)
            if self.use_tie_break:
                item_score = item_scoring.lexicographic(
                    item_score, self._tie_break_score(items, item_seq[idx], seq_len[idx]))
            valid = (items > 0) & (leaf >= 0).unsqueeze(-1)
            item_score = torch.where(valid, item_score.double(), float("-inf")).flatten(1)
            top = item_score.topk(min(k, item_score.shape[1]), dim=1)
            values[idx, : top.values.shape[1]] = top.values
            indices[idx, : top.values.shape[1]] = items.flatten(1).gather(1, top.indices)
        return values, indices

    # ------------------------------------------------------------------ scoring helpers
    def popularity_bias(self):
        """``popularity_penalty`` α > 0 ranks IDs by log P(ID | history) − α·log P_train(ID) (logit
        adjustment: generation favours IDs that were frequent in training; this takes part of
        that prior back out). P_train of a trie node = training interactions of its items (+1
        per item, so cold items have one) over all. The penalty telescopes along the path:
        reaching a depth-(l+1) node adds −α·(log P(node) − log P(parent)), so beams compare
        prefixes by their adjusted scores at every level.

        Returns None for α = 0 (the paper's ranking), else (per level l the bias of each
        depth-(l+1) node [N_{l+1}], per trie leaf the whole path's bias [N_L])."""
        alpha = float(self.settings.popularity_penalty or 0.0)
        if alpha == 0.0:
            return None
        cached = getattr(self, "_popularity_bias_cache", None)
        if cached is not None and cached[0] == alpha and cached[2].device == self.item_codes.device:
            return cached[1], cached[2]
        count = self.item_train_count.double() + 1.0
        leaf_count = torch.zeros(self.trie.n_leaves, dtype=torch.float64, device=count.device)
        leaf_count.index_add_(0, self.trie.item_leaf[1:], count[1:])
        counts = [leaf_count]                                                # depth L first
        for level in range(self.n_levels - 1, 0, -1):
            parent_count = torch.zeros(self.trie.n_nodes(level), dtype=torch.float64, device=count.device)
            parent_count.index_add_(0, self.trie.parent(level), counts[0])
            counts.insert(0, parent_count)                                   # counts[l]: depth l+1
        log_total = count[1:].sum().log()
        node_bias = []
        for level in range(self.n_levels):
            log_parent = log_total if level == 0 else counts[level - 1].log()[self.trie.parent(level)]
            node_bias.append((-alpha * (counts[level].log() - log_parent)).float())
        leaf_bias = (-alpha * (leaf_count.log() - log_total)).float()
        self._popularity_bias_cache = (alpha, node_bias, leaf_bias)
        return node_bias, leaf_bias

    def _node_bias(self):
        bias = self.popularity_bias()
        return None if bias is None else bias[0]

    def _beam(self, decoder, item_seq):
        """Constrained beam search for one group of users (their full histories ``item_seq``).
        With eval_exclude_history, beams never end on an ID whose items are all in the history:
        masking them afterwards would leave fewer than K ranked items (and torch.topk fills the
        gap with the lowest item ids, which can fake hits)."""
        banned = self.trie.leaves_within(item_seq, self.n_items) if self.settings.eval_exclude_history else None
        return constrained_beam_search(decoder, self.trie, len(item_seq), self.settings.beam_size, item_seq.device,
                                       banned_leaf=banned, node_bias=self._node_bias())

    def _start_decoding(self, item_seq, item_seq_len, user_id):
        memory, mask = self.encode(item_seq, item_seq_len, user_id)
        return _IncrementalDecoding(self, memory, mask)

    def _exact_users_per_chunk(self):
        # Bound the [users, N_l, K_l] log-prob tensor of the widest level to ~2^24 floats.
        widest = max(self.trie.child(l).numel() for l in range(self.n_levels))
        return max(1, 2**24 // widest)

    def _item_scores(self, leaf, score, item_seq, item_seq_len):
        """Spread per-ID scores over items.  leaf, score [B, W] -> [B, n_items]"""
        tie_break = None
        if self.use_tie_break:
            tie_break = lambda items: self._tie_break_score(items, item_seq, item_seq_len)  # noqa: E731
        return item_scoring.spread_over_items(leaf, score, self.trie.leaf_items, self.n_items, tie_break)

    def _tie_break_score(self, items, item_seq, item_seq_len):
        """In [0, 1), higher = ranked first among items sharing an ID.  items [B, ...]"""
        if self.settings.tie_break == "popularity":
            return item_scoring.popularity_tie_break(self.item_train_count, items)
        return item_scoring.cosine_tie_break(self.item_text_emb, items, item_seq, item_seq_len)


class _IncrementalDecoding:
    """Adapter between the TIGER decoder and the trie walks in ``beam_search``: turns the codes
    chosen at the previous level into decoder input and returns next-level log-probs."""

    def __init__(self, model: TIGER, memory, mask):
        self.model = model
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
