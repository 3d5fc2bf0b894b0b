"""Atomic file writes and content hashes for the semantic-ID artifacts.

Every file here goes through :func:`recbole_tiger.atomic_write.open_atomic`: a crash or
Ctrl-C mid-write leaves either the old file or none, never a truncated artifact that a later
run would trust.
"""
import hashlib
import json

import numpy as np
import torch

from recbole_tiger.atomic_write import open_atomic


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj):
    """sha256 of a JSON-serialisable object with sorted keys (the artifact's input key)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def atomic_torch_save(path, obj):
    with open_atomic(path, "wb") as f:
        torch.save(obj, f)


def atomic_save_numpy(path, array):
    with open_atomic(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
