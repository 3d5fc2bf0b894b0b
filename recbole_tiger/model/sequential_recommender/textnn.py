# -*- coding: utf-8 -*-
"""
TextNN
################################################

The text nearest-neighbour baseline: a user's history as the recency-weighted mean of its items'
text embeddings (the sentence embeddings the semantic IDs are built from, same encoder), every
item scored by cosine similarity to it. Nothing is learned from interactions, so it scores items
nobody has bought (the cold-start protocol's comparison for TIGER) exactly as any other item.
History items are never recommended: their own embedding is always the nearest, so the rule is
part of the model, under either evaluation protocol.
"""
import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_tiger.data.dataset import dataset_semantic_ids
from recbole_tiger.model.layers import text_similarity


class TextNN(SequentialRecommender):
    input_type = InputType.POINTWISE
    # property layers: TIGER.yaml first (its semantic-ID section: text fields, encoder), then TextNN.yaml
    base_properties = "TIGER"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        semantic_ids = dataset_semantic_ids(dataset, "TextNN", text_embeddings=True)
        self.decay = float(config["text_nn_decay"])
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"TextNN: text_nn_decay={self.decay}, expected 0 < decay <= 1 (1 = plain mean).")
        emb = F.normalize(semantic_ids.item_embeddings.float(), dim=-1)
        emb[0] = 0.0                                                           # padding
        self.register_buffer("item_text", emb)                                 # [n_items, d]
        # RecBole's trainer needs a parameter to optimise (as its Pop model has); it never changes scores
        self.fake_loss = nn.Parameter(torch.zeros(1))

    def user_vectors(self, item_seq, item_seq_len):
        """item_seq [B, N] (left-aligned) -> [B, d]: sum of decay**(age) x item text, age 0 = the latest."""
        return text_similarity.history_vectors(self.item_text, item_seq, item_seq_len, decay=self.decay)

    def calculate_loss(self, interaction):
        return self.fake_loss.sum() * 0.0

    def _scores(self, interaction):
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        scores = self.user_vectors(item_seq, item_seq_len) @ self.item_text.T              # [B, n_items]
        scores.scatter_(1, item_seq, float("-inf"))                                     # history (and padding 0)
        return scores

    def predict(self, interaction):
        scores = self._scores(interaction)
        return scores.gather(1, interaction[self.ITEM_ID][:, None])[:, 0]

    def full_sort_predict(self, interaction):
        return self._scores(interaction)
