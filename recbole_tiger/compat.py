"""Fixes that make RecBole 1.2.1 run correctly on current PyTorch.

Each fix is narrow and has a test in ``tests/test_compat.py`` that fails without it.
Importing :mod:`recbole_tiger` applies the module-level ones.
"""
import torch

# 1. RecBole's sequential model package runs ``torch.autograd.set_detect_anomaly(True)``
#    at import time (recbole/model/sequential_recommender/sine.py). Anomaly mode records a
#    stack trace for every autograd op and roughly halves training speed of *every* model,
#    so we import the package once here and switch it back off.
import recbole.model.sequential_recommender  # noqa: E402,F401

torch.autograd.set_detect_anomaly(False)


def load_checkpoint(path, device=None):
    """Load a checkpoint written by RecBole's trainer.

    torch >= 2.6 defaults to ``torch.load(weights_only=True)``, but RecBole pickles its
    ``Config`` object (model class, enums, yaml loader…) into every checkpoint, so the
    default raises ``UnpicklingError``. The files loaded here are the ones the trainer wrote
    itself, so full unpickling is scoped to exactly those paths instead of switching it on
    globally (e.g. with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD).
    """
    return torch.load(path, map_location=device, weights_only=False)
