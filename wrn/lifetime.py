"""A child process that dies with its parent (Linux ``prctl(PR_SET_PDEATHSIG)``).

Used by the node agent for the workers it starts (``launcher.agent.proc``) and by a worker for
the helper processes that scan its data (``wrn.scan``); standard library only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable

PR_SET_PDEATHSIG = 1

_libc = None


def _prctl() -> Callable[..., int]:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc.prctl


def set_pdeathsig(sig: int) -> None:
    """Ask the kernel to send ``sig`` to the calling process when its parent dies.

    Caveat (prctl(2)): "parent" is the *thread* that forked this process. If that thread exits
    while the parent process lives on, the signal fires anyway. Callers therefore spawn
    children from the main thread only, which lives as long as the process.
    """
    if _prctl()(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")


# Look the function up now, in the parent: after fork() only async-signal-safe work should run,
# and loading a shared library there is not.
try:
    _prctl()
except OSError:  # pragma: no cover - no libc (not Linux); the agent then refuses to start
    pass
