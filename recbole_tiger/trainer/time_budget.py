"""A wall-clock training budget for any RecBole trainer, plus a validation learning curve.

``train_time_budget`` (minutes, ``~`` = unlimited) bounds the wall time of ``fit``:
training *and* the validation done during training, because validation cost is part of
what a model needs to learn. The epoch whose end crosses the budget is still validated
(so its checkpoint can become the best one); training stops before the next epoch, and
the best-validation checkpoint is evaluated as usual. With ``eval_step`` > 1 the last epoch
of a run is validated too, whichever way the run ends.
"""
from time import time

from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_tiger.compat import load_checkpoint


class _BudgetSpent(Exception):
    """Raised at the start of the first epoch after the budget ran out."""


class TimeBudgetMixin:
    def __init__(self, config, model):
        super().__init__(config, model)
        budget = config["train_time_budget"]
        self.time_budget_s = None if budget is None else float(budget) * 60.0
        self.budget_exhausted = False
        self.epochs_done = 0
        self.train_seconds = 0.0  # time spent in _train_epoch only
        self.fit_seconds = 0.0  # wall time of fit: training + validation
        self.valid_curve = []  # one row per validation, for plots and reports
        self.last_train_loss = None
        self._fit_start = None

    def _elapsed(self):
        return time() - self._fit_start

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._fit_start = time()
        try:
            result = super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        except _BudgetSpent:
            self.logger.info(
                set_color("train_time_budget", "red")
                + f": {self.time_budget_s / 60:g} min spent after {self.epochs_done} epochs "
                f"({self._elapsed():.1f}s); stopping, best valid score {self.best_valid_score:.4f}"
            )
            self._add_hparam_to_tensorboard(self.best_valid_score)
            result = self.best_valid_score, self.best_valid_result
        self.fit_seconds = self._elapsed()
        return result

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.budget_exhausted:
            raise _BudgetSpent()
        start = time()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.train_seconds += time() - start
        self.epochs_done += 1
        self.last_train_loss = float(sum(loss)) if isinstance(loss, tuple) else float(loss)
        if self.time_budget_s is not None and self._elapsed() >= self.time_budget_s:
            self.budget_exhausted = True
        # The last epoch (by budget or by `epochs`) is validated even if eval_step would skip
        # it: its checkpoint may be the best, and a run must never end without a checkpoint.
        if (self.budget_exhausted or epoch_idx + 1 >= self.epochs) and self.eval_step > 0:
            self.eval_step = 1
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        if self._fit_start is not None:  # only curves of fit(), not ad-hoc evaluations
            self.valid_curve.append(
                {
                    "epoch": self.epochs_done,
                    "fit_seconds": round(self._elapsed(), 3),
                    "train_seconds": round(self.train_seconds, 3),
                    "train_loss": self.last_train_loss,
                    "valid_score": float(valid_score),
                    **{k: float(v) for k, v in valid_result.items()},
                }
            )
        return valid_score, valid_result

    # -- checkpoint loading through compat.load_checkpoint (torch>=2.6 weights_only) --
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model:
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = load_checkpoint(checkpoint_file, self.device)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    def resume_checkpoint(self, resume_file):
        checkpoint = load_checkpoint(str(resume_file), self.device)
        self.saved_model_file = str(resume_file)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            self.logger.warning("Checkpoint was written by a different model; loading may fail.")
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")


_BUDGETED = {}


def with_time_budget(trainer_class):
    """`trainer_class` with TimeBudgetMixin mixed in (same name, cached).

    Trainers outside RecBole's ``Trainer`` family (e.g. DecisionTreeTrainer) have a
    different fit loop and are returned unchanged.
    """
    if not issubclass(trainer_class, Trainer) or issubclass(trainer_class, TimeBudgetMixin):
        return trainer_class
    if trainer_class not in _BUDGETED:
        _BUDGETED[trainer_class] = type(trainer_class.__name__, (TimeBudgetMixin, trainer_class), {})
    return _BUDGETED[trainer_class]
