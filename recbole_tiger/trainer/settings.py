"""The trainers' settings, typed and checked once (defaults: the property files named below)."""
from dataclasses import dataclass
from typing import Optional

from recbole_tiger.settings import check_choice, read_settings

OVERALL_YAML = "properties/overall.yaml"
TIGER_YAML = "properties/model/TIGER.yaml"
LR_SCHEDULERS = ("rsqrt", "cosine", "constant")


@dataclass(frozen=True)
class RunSettings:
    """What every model's run gets from the plugin (time budget, resume, evaluation protocol)."""
    train_time_budget: Optional[float]  # minutes; None = no limit
    train_session_limit: Optional[float]  # minutes of this invocation; None = no limit
    resume_from: Optional[str]
    eval_exclude_history: bool
    cold_start_eval: bool

    @classmethod
    def from_config(cls, config):
        return read_settings(cls, config, component="trainer", source=OVERALL_YAML)

    @property
    def time_budget_s(self) -> Optional[float]:
        return None if self.train_time_budget is None else self.train_time_budget * 60.0

    @property
    def session_limit_s(self) -> Optional[float]:
        return None if self.train_session_limit is None else self.train_session_limit * 60.0


@dataclass(frozen=True)
class TIGERTrainerSettings:
    lr_scheduler: str
    warmup_steps: int
    beam_check_users: int

    @classmethod
    def from_config(cls, config):
        settings = read_settings(cls, config, component="TIGER trainer", source=TIGER_YAML)
        check_choice("TIGER", "lr_scheduler", settings.lr_scheduler, LR_SCHEDULERS)
        return settings
