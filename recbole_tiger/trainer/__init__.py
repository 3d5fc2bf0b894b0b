"""Trainers: ``<Model>Trainer`` classes defined here are picked up by :func:`get_trainer`, and every
trainer (ours or RecBole's) gets the plugin's behaviour mixed in by :func:`with_plugin_mixins`."""
from recbole.trainer import Trainer
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_tiger.trainer.cold_start import ColdStartMixin
from recbole_tiger.trainer.history_exclusion import ExcludeHistoryMixin
from recbole_tiger.trainer.settings import RunSettings
from recbole_tiger.trainer.tiger_trainer import RPGTrainer, TIGERTrainer  # noqa: F401
from recbole_tiger.trainer.time_budget import TimeBudgetMixin

_MIXED = {}


class RunSettingsMixin:
    """Reads the plugin's run settings once, before the mixins below it use them."""

    def __init__(self, config, model):
        self.run_settings = RunSettings.from_config(config)
        super().__init__(config, model)


def with_plugin_mixins(trainer_class):
    """``trainer_class`` with the time budget and resumable runs (``TimeBudgetMixin``), cold-start
    metrics (``ColdStartMixin``, which sees the scores after the protocol's masking) and the
    ``eval_exclude_history`` protocol (``ExcludeHistoryMixin``) mixed in (same name, cached).

    Trainers outside RecBole's ``Trainer`` family (e.g. DecisionTreeTrainer) have a
    different fit loop and are returned unchanged.
    """
    if not issubclass(trainer_class, Trainer) or issubclass(trainer_class, TimeBudgetMixin):
        return trainer_class
    if trainer_class not in _MIXED:
        mixins = (RunSettingsMixin, TimeBudgetMixin, ColdStartMixin, ExcludeHistoryMixin)
        _MIXED[trainer_class] = type(trainer_class.__name__, (*mixins, trainer_class), {})
    return _MIXED[trainer_class]


def get_trainer(model_type, model_name):
    """Trainer class for a model: ``<Model>Trainer`` of this package if it exists, else RecBole's
    choice; either way with the plugin's mixins (time budget, resume, eval protocol)."""
    trainer_class = globals().get(model_name + "Trainer")
    if not (isinstance(trainer_class, type) and issubclass(trainer_class, Trainer)):
        trainer_class = recbole_get_trainer(model_type, model_name)
    return with_plugin_mixins(trainer_class)
