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


# 2. RecBole's distributed path assumes CUDA: Config initialises the process group with the
#    `nccl` backend and a CUDA device per rank, and the trainer wraps the model in
#    DistributedDataParallel(device_ids=[local_rank]), which a CPU module rejects. Without
#    CUDA, ranks use `gloo` on the CPU (`init_cpu_process_group`, called by our Config) and
#    DDP gets no device ids. With CUDA nothing changes.
import recbole.trainer.trainer as _recbole_trainer  # noqa: E402

_RecBoleDDP = _recbole_trainer.DistributedDataParallel


def _device_aware_ddp(module, device_ids=None, **kwargs):
    if next(module.parameters()).device.type == "cpu":
        device_ids = None
    return _RecBoleDDP(module, device_ids=device_ids, **kwargs)


_recbole_trainer.DistributedDataParallel = _device_aware_ddp


def init_cpu_process_group(config_dict):
    """What RecBole's ``Config._init_device`` does for a distributed rank, on the CPU with gloo."""
    rank = config_dict["local_rank"] + (config_dict.get("offset") or 0)
    torch.distributed.init_process_group(
        backend="gloo", rank=rank, world_size=config_dict["world_size"],
        init_method=f"tcp://{config_dict['ip']}:{config_dict['port']}",
    )
    config_dict["device"] = torch.device("cpu")
    config_dict["single_spec"] = False
    if config_dict["local_rank"] != 0:  # as RecBole: only rank 0 logs and shows progress
        config_dict["state"] = "error"
        config_dict["show_progress"] = False
        config_dict["verbose"] = False


def distributed_rank():
    """This process's rank, or None outside a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return None
