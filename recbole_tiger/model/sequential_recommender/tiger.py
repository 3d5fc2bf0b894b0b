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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_tiger.model.layers.beam_search import (
    constrained_beam_search,
    exact_leaf_scores,
    given_id_scores,
)
from recbole_tiger.model.layers.prefix_trie import PrefixTrie
from recbole_tiger.model.layers.transformer import Decoder, Encoder

PAD, BOS = 0, 1
N_SPECIAL = 2  # code tokens start after PAD and BOS; user-hash tokens follow the code tokens
EVAL_MODES = ("beam", "exact")
TIE_BREAKS = ("popularity", "cosine")
ENCODER_TOKENS = ("code", "item")
TRAIN_TARGETS = ("last", "all")
BACKBONES = ("own", "t5")


def hash_user(user_id: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Deterministic user bucket: Knuth's multiplicative hash, so neighbouring RecBole ids
    (assigned in order of first appearance) do not land in neighbouring buckets."""
    return (user_id.long() * 2654435761) % (2**32) % n_buckets


class TIGER(SequentialRecommender):
    r"""Generative retrieval over semantic IDs (see module docstring)."""

    input_type = InputType.POINTWISE  # one (history, target) row at a time, no negatives

    def __init__(self, config, dataset, semantic_ids=None):
        super(TIGER, self).__init__(config, dataset)
        self.logger = logging.getLogger()

        # load parameters info
        self.d_model = config["d_model"]
        self.n_heads = config["n_heads"]
        self.d_head = config["d_head"]
        self.d_ff = config["d_ff"]
        self.dropout_prob = config["dropout_prob"]
        self.attn_dropout_prob = config["attn_dropout_prob"]
        self.n_user_tokens = config["n_user_tokens"]
        self.initializer_range = config["initializer_range"]
        self.beam_size = config["beam_size"]
        self.length_bucket_size = config["length_bucket_size"]
        self.eval_mode = config["eval_mode"]
        self.tie_break = config["tie_break"]
        self.beam_exclude_history = config["beam_exclude_history"]
        self.encoder_tokens = config["encoder_tokens"] or "code"
        self.train_targets = config["train_targets"] or "last"
        self.backbone = config["backbone"] or "own"
        # One pass per sequence needs item t's encoder state to depend on items <= t only.
        self.causal_encoder = self.train_targets == "all"
        stride = config["sequence_stride"]
        self.sequence_stride = max(1, self.max_seq_length // 2) if stride is None else int(stride)
        self._check_eval_config(config)

        if semantic_ids is None:
            # Raises (e.g. no item text in the dataset) here, at construction, not mid-training.
            from recbole_tiger.semantic_ids import load_or_build_semantic_ids

            semantic_ids = load_or_build_semantic_ids(config, dataset)
            self._check_config_matches_artifact(config, semantic_ids)
        self._check_semantic_ids(semantic_ids)
        self.codebook_sizes = [int(k) for k in semantic_ids.codebook_sizes]
        self.n_levels = len(self.codebook_sizes)
        self.dedup = bool(semantic_ids.dedup)
        self.artifact_key = semantic_ids.artifact_key
        self.artifact_path = semantic_ids.artifact_path

        # The code table travels with the checkpoint (persistent buffer), so a saved model
        # decodes exactly as it did even if the artifact on disk is rebuilt later.
        self.register_buffer("item_codes", semantic_ids.codes.long().clone())      # [n_items, L]
        self.register_buffer("item_train_count", self._training_counts(dataset))   # [n_items]
        self.use_tie_break = not self.dedup
        if self.use_tie_break and self.tie_break == "cosine":
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
        if self.train_targets == "all":
            # Rebuilt from the dataset whenever the model is built: not part of checkpoints.
            self.register_buffer("anchor_keys", self._anchor_row_keys(dataset), persistent=False)  # [A] sorted

        # define layers
        vocab_size = N_SPECIAL + self.n_code_tokens + self.n_user_tokens
        self.token_embedding = nn.Embedding(vocab_size, self.d_model, padding_idx=PAD)
        # index max_seq_length / n_levels mark the user token
        self.item_position_embedding = nn.Embedding(self.max_seq_length + 1, self.d_model)
        self.level_embedding = nn.Embedding(self.n_levels + 1, self.d_model)
        self.decoder_position_embedding = nn.Embedding(self.n_levels, self.d_model)
        layer_args = (self.d_model, self.n_heads, self.d_head, self.d_ff, self.dropout_prob)
        if self.backbone == "t5":
            # T5 has one dropout rate, attention weights included: attn_dropout_prob is unused.
            from recbole_tiger.model.layers.t5_backbone import T5Decoder, T5Encoder

            self.encoder = T5Encoder(config["n_encoder_layers"], *layer_args)
            self.decoder = T5Decoder(config["n_decoder_layers"], *layer_args)
        else:
            self.encoder = Encoder(config["n_encoder_layers"], *layer_args, self.attn_dropout_prob)
            self.decoder = Decoder(config["n_decoder_layers"], *layer_args, self.attn_dropout_prob)
        self.code_head = nn.Linear(self.d_model, self.n_code_tokens, bias=False)

        # parameters initialization
        for name, module in self.named_children():
            # The T5 backbone keeps T5's own initialisation (done when it was built): T5 does not
            # scale attention logits by 1/sqrt(d_head) and relies on its d_model**-0.5-style
            # init for sane logits; our uniform std would make a different, untuned model.
            if not (self.backbone == "t5" and name in ("encoder", "decoder")):
                module.apply(self._init_weights)

    # ------------------------------------------------------------------ construction checks
    def _check_eval_config(self, config):
        topk = config["topk"] or [10]
        self.config_topk = tuple(topk) if isinstance(topk, (list, tuple)) else (int(topk),)
        max_k = max(self.config_topk)
        if self.beam_size < max_k:
            raise ValueError(
                f"TIGER: beam_size={self.beam_size} < max(topk)={max_k}; beam search returns at "
                "most beam_size items, so Recall/NDCG@K would silently count unranked items. "
                f"Set beam_size >= {max_k}."
            )
        if self.eval_mode not in EVAL_MODES:
            raise ValueError(f"TIGER: eval_mode={self.eval_mode!r}, expected one of {EVAL_MODES}.")
        if self.tie_break not in TIE_BREAKS:
            raise ValueError(f"TIGER: tie_break={self.tie_break!r}, expected one of {TIE_BREAKS}.")
        if self.encoder_tokens not in ENCODER_TOKENS:
            raise ValueError(f"TIGER: encoder_tokens={self.encoder_tokens!r}, expected one of {ENCODER_TOKENS}.")
        if self.train_targets not in TRAIN_TARGETS:
            raise ValueError(f"TIGER: train_targets={self.train_targets!r}, expected one of {TRAIN_TARGETS}.")
        if self.backbone not in BACKBONES:
            raise ValueError(f"TIGER: backbone={self.backbone!r}, expected one of {BACKBONES}.")
        if not 1 <= self.sequence_stride <= self.max_seq_length:
            raise ValueError(f"TIGER: sequence_stride={self.sequence_stride}, expected 1..MAX_ITEM_LIST_LENGTH "
                             f"({self.max_seq_length}).")
        if self.train_targets == "all" and self.encoder_tokens != "item":
            raise ValueError("TIGER: train_targets=all needs encoder_tokens=item (the causal encoder "
                             "masks whole items; with one token per code it would not).")

    @staticmethod
    def _check_config_matches_artifact(config, sid):
        """The vocabulary is sized from the artifact; it must be the one the config asks for."""
        n_levels, size, dedup = config["sid_n_levels"], config["sid_codebook_size"], config["sid_dedup"]
        if n_levels is None or size is None:
            return
        dedup = True if dedup is None else bool(dedup)
        expected = f"{n_levels} levels of {size} codes" + (" + a collision level" if dedup else "")
        if (len(sid.codebook_sizes) != n_levels + int(dedup) or bool(sid.dedup) != dedup
                or any(int(k) != int(size) for k in sid.codebook_sizes[:n_levels])):
            raise ValueError(
                f"TIGER: the config asks for semantic IDs with {expected} (sid_n_levels, "
                f"sid_codebook_size, sid_dedup), but the artifact {sid.artifact_path} has "
                f"codebook_sizes={list(sid.codebook_sizes)}, dedup={sid.dedup}."
            )

    def _check_semantic_ids(self, sid):
        where = f"semantic IDs ({sid.artifact_path or 'in memory'})"
        codes = sid.codes
        if codes.dim() != 2 or codes.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"TIGER: {where}: codes must be an integer [n_items, n_levels] tensor, "
                             f"got {tuple(codes.shape)} {codes.dtype}.")
        if codes.shape[0] != self.n_items:
            raise ValueError(f"TIGER: {where} cover {codes.shape[0]} item ids, the dataset has "
                             f"{self.n_items} (incl. padding id 0): artifact built for another dataset?")
        if len(sid.codebook_sizes) != codes.shape[1]:
            raise ValueError(f"TIGER: {where}: {codes.shape[1]} code levels but codebook_sizes="
                             f"{list(sid.codebook_sizes)}.")
        if not bool((codes[0] == -1).all()):
            raise ValueError(f"TIGER: {where}: row 0 (padding item) must be all -1, got {codes[0].tolist()}.")
        for level, size in enumerate(sid.codebook_sizes):
            bad = ((codes[1:, level] < 0) | (codes[1:, level] >= size)).nonzero()
            if len(bad):
                item = int(bad[0]) + 1
                raise ValueError(
                    f"TIGER: {where}: item id {item} has code {int(codes[item, level])} at level "
                    f"{level}, outside [0, {size}) (codebook_sizes={list(sid.codebook_sizes)})."
                )
        if sid.dedup:
            n_unique = len(np.unique(codes[1:].cpu().numpy(), axis=0))
            if n_unique != codes.shape[0] - 1:
                raise ValueError(f"TIGER: {where}: dedup=True but only {n_unique} distinct IDs for "
                                 f"{codes.shape[0] - 1} items.")

    def _training_counts(self, dataset) -> torch.Tensor:
        """Training interactions per item: every target of the (augmented) training rows plus
        each user's first item, which only ever appears as history. 0 = cold item."""
        inter = dataset.inter_feat
        counts = torch.bincount(inter[self.ITEM_ID].long(), minlength=self.n_items)
        if self.ITEM_SEQ in inter and self.ITEM_SEQ_LEN in inter:
            first = inter[self.ITEM_SEQ][inter[self.ITEM_SEQ_LEN] == 1, 0]
            counts += torch.bincount(first.long(), minlength=self.n_items)
        counts[0] = 0
        return counts

    @staticmethod
    def _row_keys(user, item_seq, seq_len, target):
        """A 62-bit hash of each training row's content (user, history, target): identifies a
        row inside a shuffled batch.  [R], [R, N], [R], [R] -> [R] int64

        Two polynomial hashes modulo the prime 2^31 - 1 (no int64 overflow), side by side: on
        Beauty (~22k anchor rows among ~131k) the chance that any other row shares an anchor's
        key is ~1e-9, and a shared key would only train one window twice."""
        modulus = 2**31 - 1
        h1 = h2 = torch.zeros_like(user, dtype=torch.long)
        for column in (user.long()[:, None], seq_len.long()[:, None], target.long()[:, None], item_seq.long()):
            for c in column.unbind(1):
                h1 = (h1 * 1_000_003 + c) % modulus
                h2 = (h2 * 999_983 + c) % modulus
        return h1 * 2**31 + h2

    def _anchor_row_keys(self, dataset):
        """Keys of the training rows that anchor a window (``train_targets: all``).

        RecBole's training rows are each user's prefixes in time order: the k-th row (k = 1..T)
        of a user with T training targets predicts the user's item k from up to N items before
        it. Rows with (T - k) % S == 0 anchor: k = T, T - S, T - 2S, ... Each anchor trains
        its own last S targets (fewer for the first), so every target is learned once.
        """
        inter = dataset.inter_feat
        if self.ITEM_SEQ not in inter or self.ITEM_SEQ_LEN not in inter:
            raise ValueError("TIGER: train_targets=all needs RecBole's sequential training rows "
                             f"({self.ITEM_SEQ}, {self.ITEM_SEQ_LEN}); got a dataset without them.")
        user = inter[self.USER_ID].long()
        order = torch.argsort(user, stable=True)                     # users grouped, time order kept
        n_rows = torch.bincount(user, minlength=int(user.max()) + 1 if len(user) else 1)
        start = torch.cumsum(n_rows, 0) - n_rows
        k = torch.empty_like(user)
        k[order] = torch.arange(1, len(user) + 1) - start[user[order]]   # 1-based row rank in its user
        if len(user) and not bool((inter[self.ITEM_SEQ_LEN][k == 1] == 1).all()):
            raise ValueError("TIGER: train_targets=all expects each user's first training row to have a "
                             "one-item history (RecBole's sequential augmentation of the training split).")
        anchor = (n_rows[user] - k) % self.sequence_stride == 0
        keys = self._row_keys(user[anchor], inter[self.ITEM_SEQ][anchor], inter[self.ITEM_SEQ_LEN][anchor],
                              inter[self.ITEM_ID][anchor])
        return torch.sort(keys).values

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
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

    # ------------------------------------------------------------------ encoder / decoder
    def encode(self, item_seq, item_seq_len, user_id):
        """item_seq [B, N] (left-aligned, 0-padded) -> memory [B, S, D], key mask [B, S]"""
        if self.encoder_tokens == "item":
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
        x, mask = self._prepend_user(x, real.flatten(1), user_id)          # [B, 1+N*L, D]
        return self.encoder(x, mask), mask

    def _prepend_user(self, x, mask, user_id):
        """[B, S, D], [B, S] -> user token first: [B, 1+S, D], [B, 1+S] (if n_user_tokens > 0)"""
        if self.n_user_tokens == 0:
            return x, mask
        user_token = N_SPECIAL + self.n_code_tokens + hash_user(user_id, self.n_user_tokens)
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
        if self.causal_encoder:
            # Absolute position from the oldest item: under a causal mask item t must not
            # know how many items follow it (recency would tell it).
            position = steps.expand(len(item_seq), N)
        else:
            position = (item_seq_len[:, None] - 1 - steps).clamp(min=0)     # 0 = most recent
        x = self.token_embedding(tokens).sum(2) + self.item_position_embedding(position)  # [B, N, D]
        x, mask = self._prepend_user(x, item_seq > 0, user_id)
        return self.encoder(x, mask, causal=self.causal_encoder), mask

    def forward(self, item_seq, item_seq_len, user_id, target_codes):
        """Teacher forcing. target_codes [B, L] -> per-level logits [B, L, V_code] (other
        levels' codes at -inf)."""
        memory, mask = self.encode(item_seq, item_seq_len, user_id)
        h = self.decoder(self._teacher_forced_input(target_codes), memory, mask)                                   # [B, L, D]
        return self.code_head(h) + self.level_mask

    def _teacher_forced_input(self, target_codes):
        """Decoder input for teacher forcing: [BOS, c_1, ..., c_{L-1}] embedded with their
        decoder positions.  target_codes [B, L] -> [B, L, D]"""
        prev = target_codes[:, :-1] + self.level_offset[:-1] + N_SPECIAL    # [B, L-1]
        tokens = torch.cat([torch.full_like(prev[:, :1], BOS), prev], dim=1)
        return self.token_embedding(tokens) + self.decoder_position_embedding.weight

    def level_log_probs(self, h, level):
        """h [..., D] -> log-probs over level ``level``'s codes [..., K_level]"""
        start = int(self.level_offset[level])
        weight = self.code_head.weight[start : start + self.codebook_sizes[level]]
        return F.log_softmax(h @ weight.T, dim=-1)

    def length_buckets(self, item_seq_len):
        """Row indices in buckets of ``length_bucket_size`` rows of similar history length, each
        with its longest history: the encoder then pads a bucket only to that length instead
        of MAX_ITEM_LIST_LENGTH (most training prefixes are short, so this is most of the
        encoder's work saved)."""
        order = torch.argsort(item_seq_len, descending=True, stable=True)
        buckets = order.split(self.length_bucket_size)
        longest = item_seq_len[torch.stack([b[0] for b in buckets])].tolist()
        return list(zip(buckets, longest))

    # ------------------------------------------------------------------ RecBole API
    def calculate_loss(self, interaction):
        if self.train_targets == "all":
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
        return F.cross_entropy(torch.cat(logits).flatten(0, 1), labels.flatten())

    def _sequence_loss(self, interaction):
        """train_targets=all: cross-entropy over the targets of the windows anchored by this
        batch's anchor rows (other rows: nothing to do)."""
        windows, n_items, users, first = self._training_windows(interaction)
        if len(windows) == 0:  # no anchor row in this batch: a zero loss that still backprops
            return self.code_head.weight.sum() * 0.0
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
            u = int(self.n_user_tokens > 0)
            sees = torch.arange(memory.shape[1], device=win.device) <= (t + u)[:, None]   # [M, S]
            h = self.decoder(x, memory, sees, memory_index=row)              # [M, L, D]
            logits.append(self.code_head(h) + self.level_mask)               # [M, L, V]
            labels.append(codes + self.level_offset)
        return F.cross_entropy(torch.cat(logits).flatten(0, 1), torch.cat(labels).flatten())

    def _training_windows(self, interaction):
        """The windows trained by this batch: one per anchor row (see ``_anchor_row_keys``),
        its history followed by its target, up to N+1 items. A window trains its last S
        targets (S = ``sequence_stride``; all of them for a user's first window), so each
        target is trained with >= N - S + 1 items of context when the user has that many.

        Returns windows [W, N+1] (0-padded, oldest first), items per window [W] (>= 2), user [W],
        and the window position of its first trained target [W] (>= 1).
        """
        user, item_seq = interaction[self.USER_ID], interaction[self.ITEM_SEQ]
        seq_len, target = interaction[self.ITEM_SEQ_LEN], interaction[self.POS_ITEM_ID]
        key = self._row_keys(user, item_seq, seq_len, target)
        anchor = torch.isin(key, self.anchor_keys)
        item_seq, seq_len, target = item_seq[anchor], seq_len[anchor], target[anchor]
        windows = torch.cat([item_seq, torch.zeros_like(item_seq[:, :1])], dim=1)   # [W, N+1]
        windows[torch.arange(len(windows), device=windows.device), seq_len] = target
        first = (seq_len + 1 - self.sequence_stride).clamp(min=1)
        return windows, seq_len + 1, user[anchor], first

    @torch.no_grad()
    def predict(self, interaction):
        """Exact teacher-forced log-likelihood of each (history, candidate item) row; rows of
        the same history share one encoder pass (RecBole repeats a user for each candidate)."""
        item_seq, seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        user, item = interaction[self.USER_ID], interaction[self.ITEM_ID]
        key = torch.cat([user[:, None], seq_len[:, None], item_seq], dim=1)
        unique_key, group = torch.unique(key, dim=0, return_inverse=True)   # [U, 2+N], [R]
        # Lay the candidates out as [U, W] (W = most candidates of one history, pad = item 1).
        order = torch.argsort(group, stable=True)
        sizes = torch.bincount(group)
        starts = torch.cumsum(sizes, 0) - sizes
        slot = torch.empty_like(group)
        slot[order] = torch.arange(len(group), device=group.device) - starts[group[order]]
        candidates = torch.ones(len(sizes), int(sizes.max()), dtype=torch.long, device=item.device)
        candidates[group, slot] = item
        u_user, u_len, u_seq = unique_key[:, 0], unique_key[:, 1], unique_key[:, 2:]
        scores = torch.empty(candidates.shape, device=item.device)          # [U, W]
        for idx, n in self.length_buckets(u_len):
            decoder = self._start_decoding(u_seq[idx, :n], u_len[idx], u_user[idx])
            scores[idx] = given_id_scores(decoder, self.item_codes[candidates[idx]])
        row_score = scores[group, slot]                                     # [R]
        if self.use_tie_break:
            tb = self._tie_break_score(item[:, None], item_seq, seq_len)[:, 0]
            row_score = self._lexicographic(row_score, tb)
        return row_score

    @torch.no_grad()
    def full_sort_predict(self, interaction):
        """[B, n_items] scores: generated items by ID log-probability, all others -inf."""
        item_seq, seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        user = interaction[self.USER_ID]
        out = None
        for bucket, n in self.length_buckets(seq_len):
            # exact mode: a bucket's [users, N_l, K_l] log-probs can be large; split further
            for idx in bucket.split(self._exact_users_per_chunk()) if self.eval_mode == "exact" else [bucket]:
                decoder = self._start_decoding(item_seq[idx, :n], seq_len[idx], user[idx])
                if self.eval_mode == "beam":
                    banned = self._history_leaves(item_seq[idx]) if self.beam_exclude_history else None
                    leaf, score = constrained_beam_search(decoder, self.trie, len(idx), self.beam_size,
                                                          item_seq.device, banned_leaf=banned)
                else:
                    score = exact_leaf_scores(decoder, self.trie, len(idx))
                    leaf = torch.arange(score.shape[1], device=score.device).expand_as(score)
                scores = self._item_scores(leaf, score, item_seq[idx], seq_len[idx])
                if out is None:
                    out = scores.new_empty(len(item_seq), self.n_items)
                out[idx] = scores
        return out

    # ------------------------------------------------------------------ scoring helpers
    def _start_decoding(self, item_seq, item_seq_len, user_id):
        memory, mask = self.encode(item_seq, item_seq_len, user_id)
        return _IncrementalDecoding(self, memory, mask)

    def _history_leaves(self, item_seq):
        """[B, N_leaves] bool: IDs all of whose items are in the history. With
        ``beam_exclude_history`` history items are not to be recommended; a beam spent on them
        and masked afterwards would leave fewer than K ranked items (and torch.topk fills the
        gap with the lowest item ids, which can fake hits), so they are excluded inside the beam.
        (RecBole 1.2.1 itself does not mask history for sequential models.)"""
        in_history = torch.zeros(len(item_seq), self.n_items, dtype=torch.bool, device=item_seq.device)
        in_history.scatter_(1, item_seq, True)
        in_history[:, 0] = True                                             # leaf_items padding
        return in_history[:, self.trie.leaf_items].all(-1)

    def _exact_users_per_chunk(self):
        # Bound the [users, N_l, K_l] log-prob tensor of the widest level to ~2^24 floats.
        widest = max(self.trie.child(l).numel() for l in range(self.n_levels))
        return max(1, 2**24 // widest)

    def _item_scores(self, leaf, score, item_seq, item_seq_len):
        """Spread per-ID scores over items.  leaf, score [B, W] -> [B, n_items]"""
        items = self.trie.leaf_items[leaf.clamp(min=0)]                     # [B, W, G], 0 = none
        valid = (items > 0) & (leaf >= 0).unsqueeze(-1)
        item_score = score.unsqueeze(-1).expand(items.shape)
        if self.use_tie_break:
            item_score = self._lexicographic(item_score, self._tie_break_score(items, item_seq, item_seq_len))
        out = torch.full((len(leaf), self.n_items), float("-inf"), dtype=item_score.dtype, device=leaf.device)
        out.scatter_(1, torch.where(valid, items, 0).flatten(1),
                     torch.where(valid, item_score, float("-inf")).flatten(1))
        out[:, 0] = float("-inf")
        return out

    def _tie_break_score(self, items, item_seq, item_seq_len):
        """In [0, 1), higher = ranked first among items sharing an ID.  items [B, ...]"""
        if self.tie_break == "popularity":
            count = self.item_train_count.double()
            return count[items] / (count.max() + 1)
        history = self.item_text_emb[item_seq].sum(1) / item_seq_len[:, None].clamp(min=1)
        history = F.normalize(history, dim=-1)                               # [B, d]
        emb = self.item_text_emb[items]                                      # [B, ..., d]
        cos = (emb * history.view(len(history), *[1] * (items.dim() - 1), -1)).sum(-1)
        return (cos.double().clamp(-1, 1) + 1) / 2 * (1 - 2.0**-20)

    @staticmethod
    def _lexicographic(logp, tie_break):
        """Scores ordered by float32 log-prob first, then by tie_break in [0, 1): each item
        moves down by less than half the gap to the next representable float32 below its
        log-prob (exact in float64, so never across another ID's score)."""
        logp = logp.float()
        below = torch.nextafter(logp, torch.full_like(logp, float("-inf")))
        half_gap = (logp.double() - below.double()) / 2
        score = logp.double() - half_gap * (1 - tie_break)
        return torch.where(torch.isfinite(logp), score, float("-inf"))


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


@torch.no_grad()
def beam_exact_agreement(model: TIGER, interaction, topk=(5, 10)) -> dict:
    """How far constrained beam search is from the exact ranking, on one batch of users.

    Both rankings are the ones RecBole's evaluator ranks: RecBole 1.2.1 does not mask history
    items for sequential models, so history is masked in both only when the model excludes it
    from its beams (``beam_exclude_history``). They are compared as top-K *sets*: ``differ@K`` =
    fraction of users whose beam top-K is not the exact top-K, ``overlap@K`` = mean |beam top-K ∩
    exact top-K| / K. Exact scoring costs ~(number of valid ID prefixes) decoder tokens per user:
    keep batches small.
    """
    item_seq = interaction[model.ITEM_SEQ]
    mode = model.eval_mode
    try:
        model.eval_mode = "beam"
        beam = model.full_sort_predict(interaction)
        model.eval_mode = "exact"
        exact = model.full_sort_predict(interaction)
    finally:
        model.eval_mode = mode
    excluded = torch.zeros(beam.shape, dtype=torch.bool, device=beam.device)
    if model.beam_exclude_history:
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
