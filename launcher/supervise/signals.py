"""The launcher's own signals during an attempt: SIGINT, SIGTERM, SIGHUP and SIGUSR1 are caught
and acted on by the monitor's loop (a handler only notes the signal: nothing else is safe there).

The first one stops the run cleanly (state INTERRUPTED, or PREEMPTED for SIGTERM/SIGUSR1
inside a Slurm job; exit 128+signal); a second one skips the grace period.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)


class SignalCatcher:
    """Installs the handlers (from the main thread only; elsewhere it does nothing) and keeps
    the signal that came, for ``take``."""

    def __init__(self) -> None:
        self._pending: int | None = None
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in CAUGHT:
            self._old[signum] = signal.signal(signum, self._note)

    def restore(self) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old.clear()

    def _note(self, signum: int, _frame: Any) -> None:
        self._pending = signum

    def take(self) -> int | None:
        """The signal received since the last call, or None."""
        signum, self._pending = self._pending, None
        return signum
