"""The lab: measurements behind docs/results and docs/lab-notes, run from the repository root as
``python -m benchmarks.<tool>``. Not part of the installed package (``pip install`` ships
``recbole_tiger`` only); the tools use the package as any user's script would.
"""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env(**extra):
    """The environment for a ``python -m benchmarks.<tool> --child`` process: this one's, with the
    repository root on ``PYTHONPATH`` (so the child finds ``benchmarks`` from any directory)."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    return env
