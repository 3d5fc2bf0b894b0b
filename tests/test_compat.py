"""Each RecBole 1.2.1 fix in recbole_tiger.compat, with a test that fails without it."""
import pickle
import sys

import pytest
import torch

import recbole_tiger  # noqa: F401  (applies the fixes)
from recbole_tiger.config import Config
from recbole_tiger.quick_start import load_data_and_model, run_recbole_tiger
from recbole_tiger.utils import get_model

from conftest import PYTEST_ARGV


def test_anomaly_mode_is_off_after_importing_recbole_sequential_models():
    get_model("SASRec")  # imports recbole.model.sequential_recommender (sine.py turns it on)
    assert not torch.is_anomaly_enabled()


def test_best_checkpoint_reloads_under_weights_only_default(tiny_config):
    result = run_recbole_tiger("SASRec", config_dict=tiny_config)  # evaluate(load_best_model=True)
    path = result["saved_model_file"]
    # torch's own default refuses RecBole's pickled Config: the reason the fix exists.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    config, model, _, _, _, test_data = load_data_and_model(path)
    assert config["model"] == "SASRec"
    saved = torch.load(path, weights_only=False)["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value.cpu(), saved[key].cpu()), key


def test_pytest_flags_do_not_leak_into_configs(tiny_config):
    # Run as `pytest --durations=10 ...`, RecBole would read `durations=10` into every config.
    flags = [a[2:].split("=")[0] for a in PYTEST_ARGV[1:] if a.startswith("--") and "=" in a]
    config = Config(model="SASRec", config_dict=tiny_config)
    assert sys.argv[1:] == []
    for flag in flags:
        assert flag not in config.final_config_dict
