"""RecBole's Trainer plus what TIGER training and evaluation need:

* ``lr_scheduler: rsqrt`` — linear warmup for ``warmup_steps`` optimizer steps, then
  inverse-square-root decay (the TIGER paper's schedule, per step rather than per epoch);
* ``cold_start_eval: True`` — after every evaluation, Recall@K / NDCG@K restricted to
  targets that never occur in training (TIGER can generate them: every item has an ID),
  added to the result as ``cold_recall@K`` / ``cold_ndcg@K`` and logged.
"""
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from recbole.trainer import Trainer
from recbole.utils import EvaluatorType, set_color


class TIGERTrainer(Trainer):
    def __init__(self, config, model):
        super().__init__(config, model)
        self.cold_start_eval = bool(config["cold_start_eval"])
        self._cold_hits = None  # list of [n_cold, max_k] hit indicators while evaluating

    # ------------------------------------------------------------------ learning-rate schedule
    def _build_optimizer(self, **kwargs):
        optimizer = super()._build_optimizer(**kwargs)
        schedule = self.config["lr_scheduler"] or "constant"
        if schedule == "rsqrt":
            warmup = max(1, int(self.config["warmup_steps"] or 1))
            self.lr_scheduler = LambdaLR(
                optimizer, lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))
            )
            # RecBole's epoch loop calls optimizer.step() once per batch: schedule on that.
            optimizer.register_step_post_hook(lambda *_: self.lr_scheduler.step())
        elif schedule == "constant":
            self.lr_scheduler = None
        else:
            raise ValueError(f"TIGER: lr_scheduler={schedule!r}, expected 'rsqrt' or 'constant'.")
        return optimizer

    # ------------------------------------------------------------------ cold-start evaluation
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        self._cold_hits = [] if self.cold_start_eval else None
        result = super().evaluate(eval_data, load_best_model=load_best_model, model_file=model_file,
                                  show_progress=show_progress)
        if self._cold_hits is not None and result is not None:
            result.update(self._cold_metrics(eval_data))
        self._cold_hits = None
        return result

    def _full_sort_batch_eval(self, batched_data):
        out = super()._full_sort_batch_eval(batched_data)
        self._collect_cold_hits(*out)
        return out

    def _neg_sample_batch_eval(self, batched_data):
        out = super()._neg_sample_batch_eval(batched_data)
        if self.config["eval_type"] == EvaluatorType.RANKING:
            self._collect_cold_hits(*out)
        return out

    @torch.no_grad()
    def _collect_cold_hits(self, interaction, scores, positive_u, positive_i):
        """Per positive (user, item) pair whose item is cold: hit indicator at ranks 1..max K,
        ranked exactly as RecBole's collector ranks (torch.topk of the same scores)."""
        if self._cold_hits is None:
            return
        cold = self.model.item_train_count[positive_i.to(self.device)] == 0
        if not bool(cold.any()):
            return
        _, topk_idx = torch.topk(scores, max(self.config["topk"]), dim=-1)    # [B, K]
        users, items = positive_u.to(self.device)[cold], positive_i.to(self.device)[cold]
        self._cold_hits.append((topk_idx[users] == items[:, None]).cpu())

    def _cold_metrics(self, eval_data):
        hits = torch.cat(self._cold_hits) if self._cold_hits else torch.zeros(0, max(self.config["topk"]), dtype=torch.bool)
        n_targets = len(eval_data._dataset)
        places = self.config["metric_decimal_place"]
        discount = 1.0 / torch.log2(torch.arange(hits.shape[1]) + 2.0)
        metrics = {}
        for k in self.config["topk"]:
            h = hits[:, :k].float()
            # one target per row (leave-one-out): Recall@K = hit rate, NDCG@K = 1/log2(rank + 1)
            metrics[f"cold_recall@{k}"] = round(h.sum(1).mean().item(), places) if len(h) else 0.0
            metrics[f"cold_ndcg@{k}"] = round((h * discount[:k]).sum(1).mean().item(), places) if len(h) else 0.0
        self.logger.info(
            set_color("cold-start targets", "blue")
            + f" (item never seen in training): {len(hits)} of {n_targets} evaluated; "
            + ", ".join(f"{k}: {v}" for k, v in metrics.items())
        )
        return metrics
