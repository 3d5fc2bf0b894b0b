"""Atomic file writes and content hashes for the semantic-ID artifacts.

Every file here is written to a temporary file in the destination directory and renamed
with ``os.replace``: a crash or Ctrl-C mid-write leaves either the old file or none, never a
truncated artifact that a later run would trust.
"""
import hashlib
import json
import os
import tempfile

import numpy as np
import torch


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj):
    """sha256 of a JSON-serialisable object with sorted keys (the artifact's input key)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _atomic_write(path, write):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_torch_save(path, obj):
    _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_save_numpy(path, array):
    _atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))
