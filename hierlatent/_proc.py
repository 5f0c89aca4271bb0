"""Child processes die with their parent: no orphan generation workers, DataLoader workers or sweep fits.

``die_with_parent()`` runs in the child (a ``preexec_fn``, a pool initializer or a DataLoader
``worker_init_fn``) and asks Linux to send it SIGKILL when its parent dies (``PR_SET_PDEATHSIG``). It is
a no-op where prctl is not available (macOS): there, the orphan check below is the only guard.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have this process receive ``sig`` when its parent exits (Linux); kill it now if the parent is already gone.

    Args:
        sig: the signal delivered on the parent's death.
    """
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died between fork and prctl: the signal will never come
        os.kill(os.getpid(), sig)
