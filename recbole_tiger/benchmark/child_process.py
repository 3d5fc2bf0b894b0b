"""Run long child processes (training runs of a benchmark or sweep) so that they die with their parent.

Ctrl-C reaches the whole process group; ``kill <benchmark pid>`` reaches only the parent, which by
default dies at once and leaves its children training (for hours, on a core another run needs).
``stop_children_on_sigterm`` turns SIGTERM into SystemExit in the main thread and, as that unwinds,
terminates every child still running, including those started from worker threads (the diagnosis
sweep's thread pool), where no signal handler can be installed.
"""
import contextlib
import signal
import subprocess
import threading

_live = set()  # Popen objects of children still running, from any thread
_live_lock = threading.Lock()


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _stop(proc, grace_s=10):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def stop_children_on_sigterm():
    """In the main thread: SIGTERM -> SystemExit, and a SystemExit or Ctrl-C that ends the block stops
    the live children (an ordinary error, e.g. one variant failing, leaves the others to finish).
    Put it *inside* a thread pool's ``with``: it must exit first, since the pool's exit waits for
    workers that wait for their children. Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    except (SystemExit, KeyboardInterrupt):
        with _live_lock:
            running = list(_live)
        for proc in running:
            _stop(proc)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_child_process(cmd, **kwargs):
    """``subprocess.run(cmd, check=True, **kwargs)`` whose child a SIGTERM to this process stops too
    (from the main thread by itself; from worker threads inside ``stop_children_on_sigterm``)."""
    with stop_children_on_sigterm():
        proc = subprocess.Popen(cmd, **kwargs)
        with _live_lock:
            _live.add(proc)
        try:
            returncode = proc.wait()
        finally:
            _stop(proc)  # a no-op once it has exited; otherwise this wait was interrupted
            with _live_lock:
                _live.discard(proc)
    if returncode:
        raise subprocess.CalledProcessError(returncode, cmd)
