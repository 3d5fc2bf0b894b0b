"""RecBole's metrics from each user's top-K items alone, without a [users x items] score matrix.

RecBole's collector ranks a dense score row per user and builds a dense [users x items]
positive matrix next to it: 4 MB per user at a million items. Recall, NDCG, MRR, Hit and
Precision only need, per user, which of the top-K items are positives and how many positives
there are; a model that can produce its top-K directly (TIGER's beam search,
``eval_output: topk``) hands the trainer :class:`TopKScores` and this collector computes the
same ``rec.topk`` / ``rec.items`` structures from them.
"""
from dataclasses import dataclass

import torch
from recbole.evaluator import Collector


@dataclass
class TopKScores:
    values: torch.Tensor    # [B, K] descending, -inf where a user has fewer than K items
    indices: torch.Tensor   # [B, K] item ids
    n_items: int

    def __len__(self):
        return len(self.values)


class TopKCollector(Collector):
    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        if not isinstance(scores_tensor, TopKScores):
            return super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        dense_only = [k for k in ("rec.meanrank", "rec.score") if self.register.need(k)]
        if dense_only:
            raise ValueError(f"eval_output=topk gives each user's top-K only; the metrics asked for need full "
                             f"rankings ({', '.join(dense_only)}): use eval_output: dense for them.")
        k = max(self.topk)
        indices = scores_tensor.indices[:, :k]
        if self.register.need("rec.items"):
            self.data_struct.update_tensor("rec.items", indices)
        if self.register.need("rec.topk"):
            positive_u, positive_i = positive_u.to(indices.device), positive_i.to(indices.device)
            ranked = torch.isfinite(scores_tensor.values[:, :k])
            pos_idx = torch.zeros_like(indices, dtype=torch.int)
            hits = (indices[positive_u] == positive_i[:, None]) & ranked[positive_u]   # [P, K]
            pos_idx.index_add_(0, positive_u, hits.int())
            pos_len = torch.bincount(positive_u, minlength=len(indices)).int()[:, None]
            self.data_struct.update_tensor("rec.topk", torch.cat((pos_idx, pos_len), dim=1))
