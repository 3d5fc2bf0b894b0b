"""Recall@K / NDCG@K restricted to cold targets, for every model (``ColdStartMixin``).

Cold = the items of the cold-start protocol (``cold_item_ratio``, recbole_tiger/data/cold_items.py)
or, without it, the items no training row contains. TIGER can generate them (every item has a
semantic ID); ID-embedding models cannot. The collector sees the same scores RecBole's evaluator
ranks (after ``eval_exclude_history``). A split without cold targets reports no cold metric at all,
not 0.0; with some, ``cold_targets`` says how many the metrics average over.
"""
import torch
from recbole.utils import EvaluatorType, set_color

from recbole_tiger.data.cold_items import ColdItemSettings, cold_item_mask


class ColdStartMetrics:
    def __init__(self, cold_mask, topk):
        self.cold_mask = cold_mask                                  # [n_items] bool
        self.topk = list(topk)
        self.hits = []                                              # [n_cold, max K] per batch

    @torch.no_grad()
    def add(self, scores, positive_u, positive_i):
        """One evaluation batch: per positive (user, item) pair whose item is cold, its hit
        indicator at ranks 1..max K, ranked as RecBole's collector ranks (torch.topk)."""
        cold = self.cold_mask.to(positive_i.device)[positive_i]
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
        """{cold_recall@K, cold_ndcg@K, cold_targets} over the cold targets seen; {} if none."""
        if not self.n_targets:
            return {}
        hits = torch.cat(self.hits).float()
        discount = 1.0 / torch.log2(torch.arange(hits.shape[1]) + 2.0)
        metrics = {}
        for k in self.topk:
            # one target per row (leave-one-out): Recall@K = hit rate, NDCG@K = 1/log2(rank + 1)
            metrics[f"cold_recall@{k}"] = round(hits[:, :k].sum(1).mean().item(), decimals)
            metrics[f"cold_ndcg@{k}"] = round((hits[:, :k] * discount[:k]).sum(1).mean().item(), decimals)
        metrics["cold_targets"] = self.n_targets
        return metrics


class ColdStartMixin:
    """``cold_start_eval: True`` (or the cold-start protocol): after every evaluation, the metrics
    over cold targets join the result (module docstring). Needs ``run_settings``."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self._cold_start = None  # ColdStartMetrics while evaluating
        self.cold_start_eval = self.run_settings.cold_start_eval or ColdItemSettings.from_config(config).on

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        dataset = eval_data._dataset
        if self.cold_start_eval:
            counts = getattr(dataset, "item_train_count", None)
            if counts is None:
                raise ValueError("cold-start metrics need the splits' item_train_count; build the data with "
                                 "recbole_tiger.quick_start.prepare_data")
            self._cold_start = ColdStartMetrics(cold_item_mask(dataset, counts), self.config["topk"])
        try:
            result = super().evaluate(eval_data, load_best_model=load_best_model, model_file=model_file,
                                      show_progress=show_progress)
            if self._cold_start is not None and result is not None:
                metrics = self._cold_start.result(self.config["metric_decimal_place"])
                what = "protocol's cold items" if getattr(dataset, "cold_items", None) is not None \
                    else "items never seen in training"
                self.logger.info(set_color("cold-start targets", "blue") + f" ({what}): "
                                 f"{self._cold_start.n_targets} of {len(dataset)} evaluated"
                                 + ("; " + ", ".join(f"{k}: {v}" for k, v in metrics.items()) if metrics
                                    else "; no cold metric reported"))
                result.update(metrics)
        finally:
            self._cold_start = None
        return result

    def _full_sort_batch_eval(self, batched_data):
        out = super()._full_sort_batch_eval(batched_data)
        if self._cold_start is not None:
            self._cold_start.add(*out[1:])
        return out

    def _neg_sample_batch_eval(self, batched_data):
        out = super()._neg_sample_batch_eval(batched_data)
        if self._cold_start is not None and self.config["eval_type"] == EvaluatorType.RANKING:
            self._cold_start.add(*out[1:])
        return out
