"""Trainers: ``<Model>Trainer`` classes defined here are picked up by ``get_trainer``, and every
trainer (ours or RecBole's) gets the plugin's behaviour mixed in by :func:`with_plugin_mixins`."""
from recbole.trainer import Trainer

from recbole_tiger.trainer.history_exclusion import ExcludeHistoryMixin
from recbole_tiger.trainer.tiger_trainer import TIGERTrainer  # noqa: F401
from recbole_tiger.trainer.time_budget import TimeBudgetMixin

_MIXED = {}


def with_plugin_mixins(trainer_class):
    """``trainer_class`` with the time budget and resumable runs (``TimeBudgetMixin``) and the
    ``eval_exclude_history`` protocol (``ExcludeHistoryMixin``) mixed in (same name, cached).

    Trainers outside RecBole's ``Trainer`` family (e.g. DecisionTreeTrainer) have a
    different fit loop and are returned unchanged.
    """
    if not issubclass(trainer_class, Trainer) or issubclass(trainer_class, TimeBudgetMixin):
        return trainer_class
    if trainer_class not in _MIXED:
        _MIXED[trainer_class] = type(trainer_class.__name__, (TimeBudgetMixin, ExcludeHistoryMixin, trainer_class), {})
    return _MIXED[trainer_class]
