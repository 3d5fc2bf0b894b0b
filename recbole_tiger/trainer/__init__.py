"""Trainers: ``<Model>Trainer`` classes defined here are picked up by ``get_trainer``."""
from recbole_tiger.trainer.time_budget import TimeBudgetMixin, with_time_budget  # noqa: F401
from recbole_tiger.trainer.tiger_trainer import TIGERTrainer  # noqa: F401
