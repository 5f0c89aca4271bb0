"""Child processes that die with their parent: a killed ``hierlatent`` leaves no orphan workers behind.

``kill -9`` of a parent runs no cleanup handler, so its spawned corpus workers, DataLoader workers and a
sweep's child runs would live on (re-parented to pid 1), keep writing and hold their memory. Each child
therefore asks the kernel for a parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)``) as it starts;
where that is not available (macOS, ...) a daemon thread polls the parent pid instead.

Standard library only (no torch, no Lightning): it runs first thing in freshly started worker processes
and, for ``subprocess`` children, between ``fork`` and ``exec`` (``preexec_fn``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_WATCH_INTERVAL_S = 1.0


def _prctl_pdeathsig(sig: int) -> bool:
    """Arm the Linux parent-death signal of this process; False where prctl is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int, sig: int, interval: float) -> None:
    """Body of the watchdog thread: signal this process once it is no longer ``parent_pid``'s child."""
    stop = threading.Event()
    while not stop.wait(interval):
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), sig)
            return


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL, watchdog: bool = False) -> bool:
    """Make the calling process receive ``sig`` as soon as its parent dies.

    Call it first thing in a child: as a ``ProcessPoolExecutor``/``multiprocessing`` initializer
    (``initializer=die_with_parent, initargs=(os.getpid(),)``, ``watchdog=True`` is fine there), as a
    DataLoader ``worker_init_fn``, or as ``subprocess.Popen(..., preexec_fn=die_with_parent)`` (no arguments:
    the parent is the process calling ``Popen``; async-signal-safe enough for ``preexec_fn`` as long as
    ``watchdog`` stays False). Linux delivers the signal when the *thread* that started the child exits, so
    start long-lived children from a thread that lives as long as they should (e.g. the main thread).

    Args:
        parent_pid: pid of the parent to follow (default: ``os.getppid()`` now). Pass it from the parent: a
            parent that died before this call is then caught too (the child is then already re-parented).
        sig: signal to receive (default SIGKILL: nothing to clean up that the parent's resume does not redo).
        watchdog: where the parent-death signal is not available, start a daemon thread that polls the
            parent pid every second (never in ``preexec_fn``: a thread started between fork and exec is unsafe).

    Returns:
        True when the kernel's parent-death signal is armed (or the watchdog started), False otherwise.
    """
    parent = os.getppid() if parent_pid is None else int(parent_pid)
    armed = _prctl_pdeathsig(sig)
    if not armed and watchdog:
        threading.Thread(target=_watch, args=(parent, sig, _WATCH_INTERVAL_S), name="die-with-parent",
                         daemon=True).start()
        armed = True
    if os.getppid() != parent:  # the parent died before the signal was armed: nobody would send it now
        os.kill(os.getpid(), sig)
    return armed


def worker_init(parent_pid: int, *_: object) -> None:
    """Initializer of worker pools and DataLoader workers: ``die_with_parent(parent_pid, watchdog=True)``.

    ``ProcessPoolExecutor(initializer=worker_init, initargs=(os.getpid(),))``, or
    ``worker_init_fn=functools.partial(worker_init, os.getpid())`` (the worker id that DataLoader adds is ignored).

    Args:
        parent_pid: pid of the process that starts the workers (``os.getpid()`` there).
    """
    die_with_parent(parent_pid, watchdog=True)
