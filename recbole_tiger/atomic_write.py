"""Write a file so that it appears under its name only when it is complete.

Data goes to a temporary file in the destination directory (so ``os.replace`` is an atomic
rename on one file system); on any exception, Ctrl-C included, the temporary file is removed
and an existing file at the destination is left untouched. Used for everything this
package writes that a later run trusts: atomic datasets, downloads, semantic-ID artifacts,
embedding caches, benchmark results and HyperTuning's best config.
"""
import contextlib
import os
import tempfile


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
