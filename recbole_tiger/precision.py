"""Mixed precision shared by TIGER and the reranker: bf16 autocast, float32 weights and losses.

``precision: auto`` resolves per device at the moment of use: bfloat16 where the hardware does
bf16 arithmetic (a CUDA GPU that supports it; a CPU with AVX512-BF16 or AMX, as oneDNN reports
it), float32 elsewhere: on a CPU without those instructions bf16 is emulated and slower than
float32 (docs/precision.md has the measurements).
"""
import contextlib

import torch

RESOLVED = ("float32", "bfloat16")
CHOICES = ("auto",) + RESOLVED


def hardware_bf16(device):
    """Whether ``device`` does bf16 arithmetic natively."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(precision, device=None):
    """``auto`` -> ``bfloat16`` or ``float32`` for ``device`` (default: CUDA if present); the
    other choices pass through. Unknown values raise ValueError."""
    if precision not in CHOICES:
        raise ValueError(f"precision {precision!r}, expected one of {CHOICES}")
    if precision != "auto":
        return precision
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return "bfloat16" if hardware_bf16(device) else "float32"


def autocast(precision, device_type):
    """The context that runs a forward pass at ``precision`` (already resolved) on ``device_type``."""
    if precision == "float32":
        return contextlib.nullcontext()
    if precision != "bfloat16":
        raise ValueError(f"precision {precision!r} is not resolved; expected one of {RESOLVED}")
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
