"""Run a long child process (one training run of a benchmark or sweep) so that it dies with its parent."""
import signal
import subprocess
import threading


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def run_child_process(cmd, **kwargs):
    """``subprocess.run(cmd, check=True, **kwargs)``, but a SIGTERM to this (parent) process stops the child too.

    Ctrl-C reaches the whole process group; ``kill <benchmark pid>`` reaches only the parent, which
    by default dies at once and leaves its child training (for hours, on a core another run needs).
    Turned into SystemExit, the signal unwinds through ``subprocess.run``, which kills and reaps
    the child before re-raising."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers: main thread only
        return subprocess.run(cmd, check=True, **kwargs)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return subprocess.run(cmd, check=True, **kwargs)
    finally:
        signal.signal(signal.SIGTERM, previous)
