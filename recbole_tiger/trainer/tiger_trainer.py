"""RecBole's Trainer plus what TIGER training and evaluation need:

* ``lr_scheduler: rsqrt`` — linear warmup for ``warmup_steps`` optimizer steps, then
  inverse-square-root decay (the TIGER paper's schedule, per step rather than per epoch);
* ``lr_scheduler: cosine`` — the same warmup, then cosine decay to 0 at the last step of
  ``epochs`` (a schedule that knows where training ends: decaying to zero within a fixed
  budget beats an open-ended decay at the same number of steps, Li et al., ICLR 2020
  "Budgeted Training"; cornac's TIGER uses warmup + cosine). Set ``epochs`` to what the
  time budget affords: a run cut by ``train_time_budget`` first never reaches the low rates;
* ``eval_output: topk`` — the model hands over each user's top-K (``TopKScores``);
* ``text_fusion_choices`` — after training, the dense head's text-fusion weight is chosen on
  the valid split (``choose_on_valid``) and written into the checkpoint's config.

Cold-start metrics, the time budget and the evaluation protocol are every trainer's
(``recbole_tiger.trainer.with_plugin_mixins``).
"""
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from recbole.trainer import Trainer

from recbole_tiger.atomic_io import open_atomic
from recbole_tiger.compat import load_checkpoint
from recbole_tiger.trainer.topk_collector import TopKCollector, TopKScores
from recbole_tiger.trainer.beam_check import beam_vs_exact
from recbole_tiger.trainer.settings import TIGERTrainerSettings


class TIGERTrainer(Trainer):
    def __init__(self, config, model):
        self._steps_per_epoch = None  # set by fit(); the cosine schedule's length is epochs x this
        self.tiger_settings = TIGERTrainerSettings.from_config(config)  # before RecBole builds the optimizer
        super().__init__(config, model)
        # eval_output: topk — the model hands over each user's top-K, never a [users x items] matrix
        self.topk_output = hasattr(model, "full_sort_topk") and model.settings.eval_output == "topk"
        if self.topk_output:
            self.eval_collector = TopKCollector(config)

    # ------------------------------------------------------------------ learning-rate schedule
    def _build_optimizer(self, **kwargs):
        optimizer = super()._build_optimizer(**kwargs)
        schedule = self.tiger_settings.lr_scheduler
        warmup = max(1, self.tiger_settings.warmup_steps)
        if schedule in ("rsqrt", "cosine"):
            factor = self._rsqrt_factor if schedule == "rsqrt" else self._cosine_factor
            self.lr_scheduler = LambdaLR(optimizer, lambda step: factor(step + 1, warmup))
            # RecBole's epoch loop calls optimizer.step() once per batch: schedule on that.
            optimizer.register_step_post_hook(lambda *_: self.lr_scheduler.step())
        else:  # constant (the settings admit nothing else)
            self.lr_scheduler = None
        return optimizer

    @staticmethod
    def _rsqrt_factor(step, warmup):
        return min(step / warmup, math.sqrt(warmup / step))

    def _cosine_factor(self, step, warmup):
        if step < warmup:
            return step / warmup
        if self._steps_per_epoch is None:  # LambdaLR's first call, before fit(): nothing decayed yet
            return 1.0
        # the run's length in optimizer steps is known once fit() has seen the training data
        total = self.epochs * self._steps_per_epoch
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._steps_per_epoch = len(train_data)
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    # ------------------------------------------------------------------ choices on valid
    def choose_on_valid(self, valid_data, saved, best_valid_score, best_valid_result):
        """``text_fusion_choices`` [w, ...]: rank the valid split with the best checkpoint at each
        text-fusion weight, keep the one with the best ``valid_metric`` (the first on ties), set it
        on the model and in the saved checkpoint's config (a reload ranks the same). Returns the
        (valid score, valid result) to report: the chosen ranking's, or the arguments unchanged."""
        choices = getattr(getattr(self.model, "settings", None), "text_fusion_choices", None)   # RPG has none
        if not choices or valid_data is None:
            return best_valid_score, best_valid_result
        scored = []
        for i, weight in enumerate(choices):
            self.model.set_ranking(text_fusion_weight=weight)
            result = self.evaluate(valid_data, load_best_model=saved and i == 0)
            scored.append((result[self.valid_metric], weight, result))
            self.logger.info(f"text_fusion_weight={weight}: valid {self.valid_metric}={result[self.valid_metric]}")
        pick = max if self.valid_metric_bigger else min
        score, weight, result = pick(scored, key=lambda item: item[0])       # max/min keep the first of ties
        self.model.set_ranking(text_fusion_weight=weight)
        self.logger.info(f"text_fusion_weight={weight} chosen on valid ({self.valid_metric}={score})")
        if saved and self.config["local_rank"] == 0:
            checkpoint = load_checkpoint(self.saved_model_file)
            checkpoint["config"]["text_fusion_weight"] = weight
            with open_atomic(self.saved_model_file, "wb") as f:
                torch.save(checkpoint, f, pickle_protocol=4)
        return score, result

    # ------------------------------------------------------------------ top-K output
    def _full_sort_batch_eval(self, batched_data):
        if self.topk_output:
            interaction, _, positive_u, positive_i = batched_data
            values, indices = self.model.full_sort_topk(interaction.to(self.device), max(self.config["topk"]))
            return interaction, TopKScores(values, indices, self.model.n_items), positive_u, positive_i
        return super()._full_sort_batch_eval(batched_data)

    # ------------------------------------------------------------------ beam vs exact
    def beam_check(self, eval_data):
        """After testing: how often beam search's top-K differs from the exact top-K on the first
        ``beam_check_users`` users of ``eval_data`` (None when off)."""
        return beam_vs_exact(self.model, eval_data, self.tiger_settings.beam_check_users)


class RPGTrainer(TIGERTrainer):
    """RPG trains with TIGER's schedules (``lr_scheduler``, ``warmup_steps``) and ranks every item."""
