"""A wall-clock training budget for any RecBole trainer, plus a validation learning curve.

``train_time_budget`` (minutes, ``~`` = unlimited) bounds the wall time of ``fit``:
training *and* the validation done during training, because validation cost is part of
what a model needs to learn. The epoch whose end crosses the budget is still validated
(so its checkpoint can become the best one); training stops before the next epoch, and
the best-validation checkpoint is evaluated as usual. With ``eval_step`` > 1 the last epoch
of a run is validated too, whichever way the run ends.

Resumable runs: after every epoch (and when ``fit`` ends) the trainer writes
``<checkpoint>.resume.pth`` next to its best-validation checkpoint: weights, optimizer,
learning-rate schedule, early-stopping state, the budget spent so far, the validation curve
and the random-number generators. ``resume_checkpoint`` on that file (``resume_from`` in the
config, e.g. ``run_recbole_tiger.py ... --resume_from=saved/TIGER-….resume.pth``) continues the
run where it stopped: the budget counts the *total* training time of all invocations, the
curve goes on from the last epoch, and the best checkpoint stays the one file of the run,
so a run longer than one sitting is made in pieces. RecBole's own checkpoints (best
validation only) can still be resumed as in RecBole, from their epoch.

``train_session_limit`` (minutes) makes those pieces: the invocation stops after the epoch that
crosses it (validated, as the budget's last epoch is) with ``paused`` set, unless the run ended
there anyway (early stopping, ``epochs``, the total budget); the caller skips the test and the
run continues from its resume file. The extra validation at a pause is one more point on the
curve (and one more step of early-stopping patience when it does not improve).
"""
import os
import random
from time import time

import numpy as np
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_tiger.atomic_io import open_atomic
from recbole_tiger.compat import load_checkpoint

RESUME_FORMAT = "recbole_tiger.resume/1"


def resume_file_for(saved_model_file):
    """``saved/TIGER-<time>.pth`` -> ``saved/TIGER-<time>.resume.pth``"""
    stem = saved_model_file[:-4] if saved_model_file.endswith(".pth") else saved_model_file
    return stem + ".resume.pth"


class _BudgetSpent(Exception):
    """Raised at the start of the first epoch after the budget ran out."""


class TimeBudgetMixin:
    def __init__(self, config, model):
        super().__init__(config, model)
        # RecBole names checkpoints <Model>-<local time, seconds>.pth: two runs started in the
        # same second (a benchmark's or a sweep's side-by-side jobs) would write one file.
        self.saved_model_file = f"{self.saved_model_file[:-4]}-{os.getpid()}.pth"
        self.distributed = not config["single_spec"]
        if self.distributed:  # one run, one checkpoint: every rank uses rank 0's file name
            name = [self.saved_model_file]
            torch.distributed.broadcast_object_list(name, src=0)
            self.saved_model_file = name[0]
        self.time_budget_s = self.run_settings.time_budget_s
        self.session_limit_s = self.run_settings.session_limit_s
        self.budget_exhausted = False
        self.paused = False  # stopped by train_session_limit, to be resumed
        self.epochs_done = 0
        self.train_seconds = 0.0  # time spent in _train_epoch only
        self.fit_seconds = 0.0  # wall time of fit: training + validation
        self.valid_curve = []  # one row per validation, for plots and reports
        self.last_train_loss = None
        self._fit_start = None
        self._seconds_before = 0.0  # training + validation time of earlier invocations (resume)
        self._saving = False
        self._epoch_done = None  # index of the last finished epoch, for the resume file
        self._train_data = None
        self._shuffle_state = None  # the training dataloader's generator, restored on the next fit

    def _elapsed(self):
        return self._seconds_before + time() - self._fit_start

    @property
    def resume_file(self):
        return resume_file_for(self.saved_model_file)

    @property
    def stopped_by(self):
        """What ended the last ``fit``: ``paused`` (train_session_limit, to be resumed), ``budget``
        (train_time_budget), ``patience`` (stopping_step validations without improvement) or
        ``epochs``."""
        if self.paused:
            return "paused"
        if self.budget_exhausted:
            return "budget"
        return "patience" if self.cur_step > self.stopping_step else "epochs"

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._fit_start = time()
        self.paused = False
        self._saving = saved
        self._train_data = train_data
        generator = getattr(train_data, "generator", None)
        if self._shuffle_state is not None and generator is not None:
            generator.set_state(self._shuffle_state)  # the next epoch's order, as if never stopped
        if self.time_budget_s is not None and self._elapsed() >= self.time_budget_s:
            self.budget_exhausted = True  # a resumed run whose budget was already spent
        try:
            result = super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        except _BudgetSpent:
            if self.budget_exhausted:
                self.logger.info(
                    set_color("train_time_budget", "red")
                    + f": {self.time_budget_s / 60:g} min spent after {self.epochs_done} epochs "
                    f"({self._elapsed():.1f}s); stopping, best valid score {self.best_valid_score:.4f}"
                )
            self._add_hparam_to_tensorboard(self.best_valid_score)
            result = self.best_valid_score, self.best_valid_result
        # a pause only counts if the run would have gone on: not after early stopping, the last epoch or the budget
        self.paused = self.paused and not (self.budget_exhausted or self.epochs_done >= self.epochs
                                           or self.cur_step > self.stopping_step)
        if self.paused:
            self.logger.info(set_color("train_session_limit", "red") + f": {self.session_limit_s / 60:g} min of this "
                             f"invocation spent after {self.epochs_done} epochs; paused, continue with "
                             f"resume_from={self.resume_file}")
        self.fit_seconds = self._elapsed()
        self._save_resume_state()
        return result

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        # RecBole's loop has no end-of-epoch hook: the previous epoch (with its validation and
        # early-stopping bookkeeping) is complete when the next one starts.
        self._save_resume_state()
        if self.budget_exhausted or self.paused:
            raise _BudgetSpent()
        self._epoch_done = None
        start = time()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.train_seconds += time() - start
        self.epochs_done += 1
        self.last_train_loss = float(sum(loss)) if isinstance(loss, tuple) else float(loss)
        if self.time_budget_s is not None:
            self.budget_exhausted = self._any_rank(self._elapsed() >= self.time_budget_s)
        if self.session_limit_s is not None:
            self.paused = self._any_rank(time() - self._fit_start >= self.session_limit_s)
        # The last epoch (by budget, pause or `epochs`) is validated even if eval_step would skip
        # it: its checkpoint may be the best, and a run must never end without a checkpoint.
        if (self.budget_exhausted or self.paused or epoch_idx + 1 >= self.epochs) and self.eval_step > 0:
            self.eval_step = 1
        self._epoch_done = epoch_idx
        return loss

    def _any_rank(self, flag):
        """``flag`` of this process, or of any rank in distributed training, so that every rank
        stops after the same epoch (ranks' clocks differ by a little)."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

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
            if self.distributed:  # rank 0 writes the checkpoint: every rank reads it once it is there
                torch.distributed.barrier()
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = load_checkpoint(checkpoint_file, self.device)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    # -- resumable runs --
    def _save_resume_state(self):
        """Everything needed to continue this run after the last finished epoch."""
        if not self._saving or self._epoch_done is None:
            return
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        scheduler = getattr(self, "lr_scheduler", None)
        state = {
            "format": RESUME_FORMAT,
            "config": self.config,
            "epoch": self._epoch_done,
            "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score,
            "best_valid_result": self.best_valid_result,
            "best_model_file": self.saved_model_file,
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": scheduler.state_dict() if scheduler is not None else None,
            "budget": {"elapsed_seconds": self._elapsed(), "train_seconds": self.train_seconds,
                       "epochs_done": self.epochs_done, "valid_curve": self.valid_curve},
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                    "shuffle": getattr(self._train_data, "generator", torch.Generator()).get_state()},
        }
        with open_atomic(self.resume_file, "wb") as f:
            torch.save(state, f, pickle_protocol=4)

    def resume_checkpoint(self, resume_file):
        """Continue training from ``resume_file``: a ``.resume.pth`` file of this trainer (the
        whole run's state, see the module docstring) or a RecBole checkpoint (its epoch)."""
        checkpoint = load_checkpoint(str(resume_file), self.device)
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            raise ValueError(f"resume_from={resume_file}: written by model {checkpoint['config']['model']}, "
                             f"this run trains {self.config['model']}.")
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler = getattr(self, "lr_scheduler", None)
        if checkpoint.get("format") == RESUME_FORMAT:
            self.saved_model_file = checkpoint["best_model_file"]
            self.best_valid_result = checkpoint["best_valid_result"]
            budget = checkpoint["budget"]
            self._seconds_before = budget["elapsed_seconds"]
            self.train_seconds = budget["train_seconds"]
            self.epochs_done = budget["epochs_done"]
            self.valid_curve = list(budget["valid_curve"])
            if scheduler is not None and checkpoint["lr_scheduler"] is not None:
                scheduler.load_state_dict(checkpoint["lr_scheduler"])
            rng = checkpoint["rng"]
            torch.set_rng_state(rng["torch"])
            np.random.set_state(rng["numpy"])
            random.setstate(rng["python"])
            self._shuffle_state = rng["shuffle"]
        else:  # a RecBole checkpoint: best weights only
            self.saved_model_file = str(resume_file)
            if scheduler is not None:  # continue the schedule from the optimizer's step count
                state = next(iter(self.optimizer.state.values()), {})
                scheduler.last_epoch = int(state.get("step", 0))
        self.logger.info(f"Checkpoint {resume_file} loaded. Resume training from epoch {self.start_epoch} "
                         f"({self._seconds_before:.0f}s of the budget already spent)")
