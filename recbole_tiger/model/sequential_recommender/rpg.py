# -*- coding: utf-8 -*-
"""
RPG
################################################

Generative retrieval with long, unordered semantic IDs predicted in parallel (Hou et al.,
"Generating Long Semantic IDs in Parallel for Recommendation", KDD 2025).

Every item is ``sid_n_levels`` codes (32 x 256 by default) from optimized product quantization
of the same text (+ co-purchase) vectors TIGER's IDs are built from (``sid_quantizer: opq``).
A causal transformer reads the history (an item's input is the mean of its code embeddings), and
from its last state one small residual head per code position predicts that position's code:
cosine similarity to the code embeddings (tied with the input) over a temperature. The loss is
the mean of the positions' cross-entropies. An item's score is the mean log-probability of its
codes, so one pass scores every item of the catalogue exactly: no beam, and an item nobody has
bought is scored through its codes like any other (its ID comes from its text). RPG's decoding
graph approximates this full scoring for catalogues too large to score; RecBole's full ranking
needs every item's score, which is also the exact ranking.

Training reads each user's sequence once per window (``train_targets: all`` in TIGER's terms,
``layers/window_training.py``): position t predicts item t+1 for every trained target.
"""
import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_tiger.data.dataset import dataset_semantic_ids
from recbole_tiger.model.layers.history_encoding import length_buckets
from recbole_tiger.model.layers.transformer import Encoder
from recbole_tiger.model.layers.window_training import training_windows


class CodeHeads(nn.Module):
    """One residual block per code position: ``h + SiLU(W_m h + b_m)``, ``W_m`` starting at 0
    (each head starts as the identity, as RPG's).  h [..., D] -> [..., M, D]"""

    def __init__(self, *, n_heads, d_model):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_heads, d_model, d_model))
        self.bias = nn.Parameter(torch.zeros(n_heads, d_model))

    def forward(self, h):
        return h.unsqueeze(-2) + F.silu(torch.einsum("...d,mde->...me", h, self.weight) + self.bias)


class RPG(SequentialRecommender):
    input_type = InputType.POINTWISE
    # property layers: TIGER.yaml first (its semantic-ID section, schedules, history length), then RPG.yaml
    base_properties = "TIGER"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        semantic_ids = dataset_semantic_ids(dataset, "RPG")
        if semantic_ids.dedup:
            raise ValueError("RPG: its codes are predicted in parallel and need no collision code; "
                             "set sid_dedup: False (properties/model/RPG.yaml does).")
        codes = semantic_ids.codes.long()                                      # [n_items, M], row 0 = -1
        self.n_codes, self.codebook_size = codes.shape[1], int(max(semantic_ids.codebook_sizes))
        self.d_model = int(config["d_model"])
        self.temperature = float(config["code_temperature"])
        self.stride = int(config["sequence_stride"] or max(1, self.max_seq_length // 2))
        self.length_bucket_size = int(config["length_bucket_size"])
        if self.temperature <= 0:
            raise ValueError(f"RPG: code_temperature={self.temperature}, expected > 0.")
        # code m of an item is token 1 + m*K + code (0 = padding), so one table holds every position
        offset = torch.arange(self.n_codes) * self.codebook_size
        tokens = torch.where(codes >= 0, codes + offset + 1, 0)
        tokens[0] = 0
        self.register_buffer("item_tokens", tokens)                            # [n_items, M]
        self.token_embedding = nn.Embedding(1 + self.n_codes * self.codebook_size, self.d_model, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, self.d_model)
        self.encoder = Encoder(n_layers=int(config["n_layers"]), d_model=self.d_model, n_heads=int(config["n_heads"]),
                               d_head=int(config["d_head"]), d_ff=int(config["d_ff"]),
                               dropout=float(config["dropout_prob"]), attn_dropout=float(config["attn_dropout_prob"]))
        self.heads = CodeHeads(n_heads=self.n_codes, d_model=self.d_model)
        std = float(config["initializer_range"])
        for module in (self.token_embedding, self.position_embedding):
            module.weight.data.normal_(0.0, std)
        self.token_embedding.weight.data[0].zero_()
        for name, p in self.encoder.named_parameters():
            if p.dim() > 1:
                p.data.normal_(0.0, std)

    # ------------------------------------------------------------------ model
    def states(self, item_seq):
        """item_seq [B, N] (left-aligned, 0-padded) -> [B, N, D]: state t has seen items <= t."""
        n = item_seq.shape[1]
        x = self.token_embedding(self.item_tokens[item_seq]).mean(2)           # [B, N, D] mean of its codes
        x = x + self.position_embedding.weight[:n]
        return self.encoder(x, item_seq > 0, causal=True)

    def code_log_probs(self, h):
        """h [R, D] -> [R, M, K] log-probabilities of every position's codes."""
        heads = F.normalize(self.heads(h), dim=-1)                                  # [R, M, D]
        codes = F.normalize(self.token_embedding.weight[1:], dim=-1).view(self.n_codes, self.codebook_size, -1)
        logits = torch.einsum("rmd,mkd->rmk", heads, codes) / self.temperature
        return logits.log_softmax(-1)

    def item_scores(self, log_probs):
        """log_probs [R, M, K] -> [R, n_items]: the mean log-probability of each item's codes
        (the padding item -inf)."""
        flat = log_probs.flatten(1)                                                 # [R, M*K]
        tokens = (self.item_tokens[1:] - 1).clamp(min=0)                            # [n_items-1, M]
        # a bag of each item's M codes over the users' log-probabilities laid out per code
        # ([M*K, R]): contiguous R-wide reads, 15x faster on a CPU than M gathers of [R, n_items]
        per_item = F.embedding_bag(tokens, flat.T.contiguous(), mode="mean")        # [n_items-1, R]
        scores = torch.cat([per_item.new_zeros(1, len(flat)), per_item]).T.contiguous()   # [R, n_items]
        scores[:, 0] = float("-inf")
        return scores

    def last_states(self, item_seq, item_seq_len):
        """[B, D]: the state after each history's most recent item, encoded in length buckets."""
        out = torch.empty(len(item_seq), self.d_model, device=item_seq.device)
        for idx, n in length_buckets(item_seq_len, self.length_bucket_size):
            states = self.states(item_seq[idx, :n])                                 # [b, n, D]
            out[idx] = states[torch.arange(len(idx), device=states.device), item_seq_len[idx] - 1]
        return out

    # ------------------------------------------------------------------ RecBole API
    def training_windows(self, interaction):
        return training_windows(interaction, stride=self.stride, user_field=self.USER_ID,
                                item_seq_field=self.ITEM_SEQ, item_seq_len_field=self.ITEM_SEQ_LEN,
                                target_field=self.POS_ITEM_ID)

    def count_training_targets(self, interaction):
        return self.training_windows(interaction).n_targets

    def calculate_loss(self, interaction):
        windows = self.training_windows(interaction)
        if len(windows.items) == 0:  # no anchor row in this batch: a zero loss that still backprops
            return self.token_embedding.weight.sum() * 0.0
        losses, n = [], 0
        for idx, length in length_buckets(windows.n_items, self.length_bucket_size):
            win = windows.items[idx, :length]
            states = self.states(win[:, :-1])                                       # [b, T, D]
            target = win[:, 1:]                                                     # [b, T]
            steps = torch.arange(1, length, device=win.device)
            row, t = ((target > 0) & (steps >= windows.first[idx, None])).nonzero(as_tuple=True)
            log_probs = self.code_log_probs(states[row, t])                        # [R, M, K]
            labels = self.item_tokens[target[row, t]] - 1                           # [R, M] in 0..M*K-1
            labels = labels - torch.arange(self.n_codes, device=labels.device) * self.codebook_size
            losses.append(-log_probs.gather(2, labels[..., None]).sum())           # summed over R and M
            n += len(row) * self.n_codes
        return torch.stack(losses).sum() / n

    def _scores(self, interaction):
        h = self.last_states(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return self.item_scores(self.code_log_probs(h))

    def predict(self, interaction):
        return self._scores(interaction).gather(1, interaction[self.ITEM_ID][:, None])[:, 0]

    def full_sort_predict(self, interaction):
        return self._scores(interaction)
