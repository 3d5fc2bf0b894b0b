# -*- coding: utf-8 -*-
"""
TIGER
################################################

Reference:
    Shashank Rajput et al. "Recommender Systems with Generative Retrieval." in NeurIPS 2023.

An encoder–decoder reads a user's history as semantic-ID codes and generates the next item's ID
code by code; ranking = beam search over the IDs that exist (a prefix trie of every item).

Sequences (L = semantic-ID levels, N = MAX_ITEM_LIST_LENGTH):
  encoder  [user token] + codes of the history items, oldest first   -> 1 + N*L tokens
           (``encoder_tokens: item``: one token per item, the sum of its code embeddings -> 1 + N)
  decoder  [BOS, c_1, ..., c_{L-1}] -> predicts [c_1, ..., c_L], causal

Training targets: ``last`` (the paper) learns one target per RecBole training row; ``all`` every
next item of a user's window in one causal pass (``layers/window_training.py``). Positions are
learned embeddings of "which history item, from the most recent" and "which ID level" (attention
stays bias-free for SDPA's fused kernels). ``backbone: t5`` swaps in transformers' T5Stack
(``layers/t5_backbone.py``); ``dense_head: True`` adds a dense user vector fused into the
ranking (``layers/dense_head.py``).
"""
import logging

import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_tiger.model.layers import dense_head, id_ranking, window_training
from recbole_tiger.model.layers.code_loss import code_loss, level_mask
from recbole_tiger.model.layers.history_encoding import (
    BOS, N_SPECIAL, PAD, EmbeddingTables, embed_codes, embed_items, length_buckets)
from recbole_tiger.model.layers.popularity_prior import PopularityPrior
from recbole_tiger.model.layers.prefix_trie import PrefixTrie
from recbole_tiger.model.layers.transformer import Decoder, Encoder
from recbole_tiger.model.tiger_settings import TIGERSettings
from recbole_tiger.precision import autocast, resolve_precision


class TIGER(SequentialRecommender):
    r"""Generative retrieval over semantic IDs. Needs TIGERDataset's ``semantic_ids`` and ``item_train_count``
    (``semantic_ids=`` overrides the dataset's); ``settings`` is frozen, :meth:`set_ranking` changes the ranking."""

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
                f"{type(dataset).__name__}. Create the dataset with recbole_tiger.data.dataset.create_dataset "
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
        cosine_ties = self.use_tie_break and s.tie_break == "cosine"
        needs_text = self._settings_needing_text(s)
        if needs_text and semantic_ids.item_embeddings is None:
            raise ValueError(
                f"TIGER: {needs_text} SemanticIDs.item_embeddings (the items' text embeddings), but the artifact "
                f"{semantic_ids.artifact_path} has none; use tie_break: popularity and text_fusion_weight: 0, "
                "or rebuild the artifact."
            )
        if semantic_ids.item_embeddings is not None and (cosine_ties or s.dense_head):
            # the dense head's text term may be switched on after training (set_ranking): rebuilt
            # from the artifact like the head's own text features; the cosine tie-break's copy
            # travels with the checkpoint, as it always has
            emb = F.normalize(semantic_ids.item_embeddings.float(), dim=-1)
            self.register_buffer("item_text_emb", emb.clone(), persistent=cosine_ties)   # [n_items, d]

        sizes = torch.tensor(self.codebook_sizes)
        self.n_code_tokens = int(sizes.sum())
        self.register_buffer("level_offset", torch.cumsum(sizes, 0) - sizes, persistent=False)    # [L]
        self.register_buffer("level_mask", level_mask(self.codebook_sizes), persistent=False)    # [L, V_code]
        self.trie = PrefixTrie(self.item_codes, self.codebook_sizes)
        self.register_load_state_dict_post_hook(TIGER._rebuild_trie_after_load)
        self._popularity_prior = None  # built on first use (layers/popularity_prior.py)
        self._precision = {}  # device type -> the resolved ``precision`` (auto depends on the device)
        self.logger.info(f"TIGER precision: {s.precision} -> {self.resolved_precision(config['device'])} "
                         f"on {torch.device(config['device']).type}")

        # define layers
        vocab_size = N_SPECIAL + self.n_code_tokens + s.n_user_tokens
        self.token_embedding = nn.Embedding(vocab_size, s.d_model, padding_idx=PAD)
        # index max_seq_length / n_levels mark the user token
        self.item_position_embedding = nn.Embedding(self.max_seq_length + 1, s.d_model)
        self.level_embedding = nn.Embedding(self.n_levels + 1, s.d_model)
        self.decoder_position_embedding = nn.Embedding(self.n_levels, s.d_model)
        # ``item_id_embedding``: history items also carry an embedding of their own id (input side
        # only; the output stays semantic IDs), so rarely seen items keep what their own
        # interactions say although codes are shared by similar items.
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
        # as in T5: that goes with T5's std-1 embeddings; ours start at initializer_range.
        self.code_head = None if s.tie_code_embeddings else nn.Linear(s.d_model, self.n_code_tokens, bias=False)
        self.dense_head = dense_head.DenseHead(
            d_model=s.d_model, n_items=self.n_items, features=s.dense_item_features, temperature=s.dense_temperature,
            text_embeddings=semantic_ids.item_embeddings) if s.dense_head else None

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

    def _settings_needing_text(self, s):
        """'<key=value, ...> need(s)' for the settings that read the items' text embeddings; '' if none."""
        needs = []
        if self.use_tie_break and s.tie_break == "cosine":
            needs.append(f"tie_break={s.tie_break}")
        if s.text_fusion_weight > 0:
            needs.append(f"text_fusion_weight={s.text_fusion_weight}")
        if any(w > 0 for w in (s.text_fusion_choices or ())):
            needs.append(f"text_fusion_choices={list(s.text_fusion_choices)}")
        return f"{', '.join(needs)} {'needs' if len(needs) == 1 else 'need'}" if needs else ""

    def set_ranking(self, **changes):
        """Change how this model ranks, not what it learned: only the ranking-time settings
        (``tiger_settings.RANKING_KEYS``). Unknown keys and invalid values
        raise ValueError; the checked settings replace ``self.settings`` and cached ranking
        tables are dropped. Returns the previous values of the changed keys (to restore them)."""
        settings = self.settings.with_ranking(self.max_seq_length, **changes)
        needs_text = self._settings_needing_text(settings)
        if needs_text and not hasattr(self, "item_text_emb"):
            raise ValueError(f"TIGER: {needs_text} the items' text embeddings, which this model was built without "
                             "(SemanticIDs.item_embeddings).")
        previous = {key: getattr(self.settings, key) for key in changes}
        self.settings = settings
        self._popularity_prior = None
        return previous

    # ------------------------------------------------------------------ precision
    def resolved_precision(self, device=None):
        """float32 or bfloat16: ``precision`` resolved for ``device`` (default: where the model is)."""
        device = torch.device(device if device is not None else self.item_codes.device)
        if device.type not in self._precision:
            self._precision[device.type] = resolve_precision(self.settings.precision, device)
        return self._precision[device.type]

    def autocast(self):
        """``precision: bfloat16``: the transformer runs under bf16 autocast (weights, optimizer
        state and losses stay float32); the output scores are float32 (``code_logits``,
        ``level_log_probs``, the dense head), so rankings keep float32's resolution."""
        return autocast(self.resolved_precision(), self.item_codes.device.type)

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
        module._popularity_prior = None  # the loaded training counts may differ

    # ------------------------------------------------------------------ encoder / decoder
    def encode(self, item_seq, item_seq_len, user_id):
        """item_seq [B, N] (left-aligned, 0-padded) -> memory [B, S, D], key mask [B, S]"""
        tables = EmbeddingTables(self.token_embedding, self.item_position_embedding, self.level_embedding,
                                 self.item_embedding, self.item_codes, self.level_offset, self.settings.n_user_tokens)
        if self.settings.encoder_tokens == "item":
            causal = self.settings.causal_encoder
            x, mask = embed_items(item_seq, item_seq_len, user_id, tables, causal=causal)   # [B, 1+N, D]
            return self.encoder(x, mask, causal=causal), mask
        x, mask = embed_codes(item_seq, item_seq_len, user_id, tables)                    # [B, 1+N*L, D]
        return self.encoder(x, mask), mask

    def forward(self, item_seq, item_seq_len, user_id, target_codes):
        """Teacher forcing. target_codes [B, L] -> level-masked logits [B, L, V_code], encoder memory [B, S, D]"""
        memory, mask = self.encode(item_seq, item_seq_len, user_id)
        h = self.decoder(self.teacher_forced_input(target_codes), memory, mask)           # [B, L, D]
        return self.code_logits(h) + self.level_mask, memory

    def last_item_state(self, memory, item_seq_len):
        """[B, D]: the encoder state of each history's most recent item (the dense head's input)."""
        s = self.settings
        per_item = self.n_levels if s.encoder_tokens == "code" else 1
        return memory[torch.arange(len(memory), device=memory.device), int(s.n_user_tokens > 0) + item_seq_len * per_item - 1]

    def teacher_forced_input(self, target_codes):
        """Decoder input for teacher forcing: [BOS, c_1, ..., c_{L-1}] embedded with their
        decoder positions.  target_codes [B, L] -> [B, L, D]"""
        prev = target_codes[:, :-1] + self.level_offset[:-1] + N_SPECIAL    # [B, L-1]
        tokens = torch.cat([torch.full_like(prev[:, :1], BOS), prev], dim=1)
        return self.token_embedding(tokens) + self.decoder_position_embedding.weight

    def level_log_probs(self, h, level):
        """h [..., D] -> log-probs over level ``level``'s codes [..., K_level]"""
        start = int(self.level_offset[level])
        weight = self.code_weight()[start : start + self.codebook_sizes[level]]
        with torch.autocast(h.device.type, enabled=False):
            return F.log_softmax(h.float() @ weight.T, dim=-1)

    def code_weight(self):
        """[V_code, D] output weights of the code tokens (tied: their input embeddings)."""
        if self.code_head is None:
            return self.token_embedding.weight[N_SPECIAL : N_SPECIAL + self.n_code_tokens]
        return self.code_head.weight

    def code_logits(self, h):
        """h [..., D] -> float32 logits over all code tokens [..., V_code]"""
        with torch.autocast(h.device.type, enabled=False):
            return h.float() @ self.code_weight().T

    def length_buckets(self, item_seq_len):
        """[(row indices, longest history), ...] of ``length_bucket_size`` rows of similar length."""
        return length_buckets(item_seq_len, self.settings.length_bucket_size)

    def popularity_prior(self):
        """The ``popularity_penalty`` prior (layers/popularity_prior.py); None for α = 0 (the paper)."""
        alpha = float(self.settings.popularity_penalty)
        if alpha == 0.0:
            return None
        prior = self._popularity_prior
        if prior is None or prior.alpha != alpha or prior.device != self.item_codes.device:
            prior = self._popularity_prior = PopularityPrior(self.trie, self.item_train_count, alpha=alpha)
        return prior

    # ------------------------------------------------------------------ RecBole API
    def training_windows(self, interaction):
        """train_targets=all: the windows this batch trains (layers/window_training.py)."""
        return window_training.training_windows(
            interaction, stride=self.settings.sequence_stride, user_field=self.USER_ID,
            item_seq_field=self.ITEM_SEQ, item_seq_len_field=self.ITEM_SEQ_LEN, target_field=self.POS_ITEM_ID)

    def count_training_targets(self, interaction):
        """Targets one ``calculate_loss(interaction)`` learns from (for throughput accounting)."""
        if self.settings.train_targets == "all":
            return self.training_windows(interaction).n_targets
        return len(interaction)

    def calculate_loss(self, interaction):
        with self.autocast():
            return self._loss(interaction)

    def _loss(self, interaction):
        if self.settings.train_targets == "all":
            windows = self.training_windows(interaction)
            if len(windows.items) == 0:  # no anchor row in this batch: a zero loss that still backprops
                return self.code_weight().sum() * 0.0
            logits, labels, states, items = window_training.window_logits(self, windows)   # [M, L, V], [M, L]
        else:
            item_seq, seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
            user, items = interaction[self.USER_ID], interaction[self.POS_ITEM_ID]
            target = self.item_codes[items]                                           # [B, L]
            rows, logits, states = [], [], []
            for idx, n in self.length_buckets(seq_len):
                rows.append(idx)
                bucket_logits, memory = self.forward(item_seq[idx, :n], seq_len[idx], user[idx], target[idx])
                logits.append(bucket_logits)
                states.append(self.last_item_state(memory, seq_len[idx]))
            rows = torch.cat(rows)  # labels in code space
            logits, labels, states, items = torch.cat(logits), target[rows] + self.level_offset, torch.cat(states), items[rows]
        loss = code_loss(logits, labels, level_mask=self.level_mask, label_smoothing=self.settings.label_smoothing)
        if self.dense_head is not None:
            loss = loss + self.settings.dense_loss_weight * dense_head.dense_loss(self, states, items)
        return loss

    def predict(self, interaction):
        """Exact log-likelihood of each (history, candidate item) row (sampled evaluation)."""
        args = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], interaction[self.USER_ID]
        with self.autocast():
            scores = id_ranking.predict_scores(self, *args, interaction[self.ITEM_ID])
            return scores if self.dense_head is None else dense_head.fused_rows(self, *args, interaction[self.ITEM_ID], scores)

    def full_sort_predict(self, interaction):
        """[B, n_items] scores: generated items by ID log-probability, all others -inf (with the
        dense head: its log-softmax over every item, fused with the generated IDs' scores)."""
        args = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], interaction[self.USER_ID]
        with self.autocast():
            if self.dense_head is None:
                return id_ranking.full_sort_scores(self, *args)
            return dense_head.fused_full_sort(self, *args)

    def full_sort_topk(self, interaction, k):
        """The top-``k`` items per user, ranked as ``full_sort_predict`` ranks them, without its
        [B, n_items] matrix (``eval_output: topk``).  -> values [B, k] (-inf where fewer), item ids [B, k]"""
        if self.dense_head is not None:  # the dense head scores every item anyway
            return self.full_sort_predict(interaction).double().topk(k, dim=1)
        with self.autocast():
            return id_ranking.full_sort_topk(self, interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN],
                                             interaction[self.USER_ID], k)
