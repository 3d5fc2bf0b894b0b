"""Recall@K / NDCG@K restricted to cold targets: items that never occur in training.

TIGER can generate them (every item has a semantic ID); ID-embedding models cannot. The
trainer feeds this collector the same scores RecBole's evaluator ranks (``cold_start_eval``).
"""
import torch


class ColdStartMetrics:
    def __init__(self, item_train_count, topk):
        self.item_train_count = item_train_count                   # [n_items], 0 = cold
        self.topk = list(topk)
        self.hits = []                                              # [n_cold, max K] per batch

    @torch.no_grad()
    def add(self, scores, positive_u, positive_i):
        """One evaluation batch: per positive (user, item) pair whose item is cold, its hit
        indicator at ranks 1..max K, ranked as RecBole's collector ranks (torch.topk)."""
        count = self.item_train_count.to(positive_i.device)
        cold = count[positive_i] == 0
        if not bool(cold.any()):
            return
        if isinstance(scores, torch.Tensor):
            topk_idx = torch.topk(scores, max(self.topk), dim=-1).indices     # [B, K]
        else:                                                       # TopKScores (eval_output: topk)
            topk_idx = scores.indices[:, : max(self.topk)]
        users, items = positive_u.to(topk_idx.device)[cold], positive_i.to(topk_idx.device)[cold]
        self.hits.append((topk_idx[users] == items[:, None]).cpu())

    @property
    def n_targets(self):
        return sum(len(h) for h in self.hits)

    def result(self, decimals=4):
        """{cold_recall@K, cold_ndcg@K} over the cold targets seen (0.0 if none)."""
        hits = torch.cat(self.hits) if self.hits else torch.zeros(0, max(self.topk), dtype=torch.bool)
        discount = 1.0 / torch.log2(torch.arange(hits.shape[1]) + 2.0)
        metrics = {}
        for k in self.topk:
            h = hits[:, :k].float()
            # one target per row (leave-one-out): Recall@K = hit rate, NDCG@K = 1/log2(rank + 1)
            metrics[f"cold_recall@{k}"] = round(h.sum(1).mean().item(), decimals) if len(h) else 0.0
            metrics[f"cold_ndcg@{k}"] = round((h * discount[:k]).sum(1).mean().item(), decimals) if len(h) else 0.0
        return metrics
