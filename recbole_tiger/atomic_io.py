"""Files this package writes and trusts later: atomic writes and content hashes.

A file appears under its name only when it is complete.

Data goes to a temporary file in the destination directory (so ``os.replace`` is an atomic
rename on one file system); on any exception, Ctrl-C included, the temporary file is removed
and an existing file at the destination is left untouched. Used for everything this
package writes that a later run trusts: atomic datasets, downloads, semantic-ID artifacts,
embedding caches, benchmark results and HyperTuning's best config.
"""
import contextlib
import hashlib
import json
import os
import tempfile

import numpy as np
import torch


@contextlib.contextmanager
def open_atomic(path, mode="w", encoding="utf-8", suffix=".tmp"):
    """``with open_atomic(path) as f: ...`` — ``mode`` is ``"w"`` (text) or ``"wb"``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=suffix)
    text = "b" not in mode
    try:
        with os.fdopen(fd, mode, **({"encoding": encoding, "newline": "\n"} if text else {})) as handle:
            set_default_permissions(tmp_path)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise


def set_default_permissions(path):
    """Give a ``mkstemp`` file (created 0600) the mode a plain ``open`` would: 0666 & ~umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_text_atomic(path, text):
    with open_atomic(path) as f:
        f.write(text)


def atomic_torch_save(path, obj):
    with open_atomic(path, "wb") as f:
        torch.save(obj, f)


def atomic_save_numpy(path, array):
    with open_atomic(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj):
    """sha256 of a JSON-serialisable object with sorted keys (e.g. an artifact's input key)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
