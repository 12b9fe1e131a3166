"""What a launch holds while it runs: the backend (with its live connections), the scheduler port
and the run directory's lock. Taken while the launch is prepared, closed in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from launcher.backends.base import Backend
    from launcher.backends.ports import PortReservation
    from launcher.rundir.layout import RunDirLock


@dataclass
class HeldResources:
    """The resources of one launch. ``port`` changes when a restart (or a standby) needs a new
    scheduler port; ``close`` frees all of them once."""

    backend: Backend | None = None
    port: PortReservation | None = None
    lock: RunDirLock | None = None

    @property
    def port_number(self) -> int | None:
        return self.port.port if self.port is not None else None

    def close(self) -> None:
        """Free the port and the run directory, and close the backend's connections."""
        port, lock, backend, self.port, self.lock, self.backend = \
            self.port, self.lock, self.backend, None, None, None
        try:
            if port is not None:
                port.release()
            if lock is not None:
                lock.release()
        finally:
            if backend is not None:
                backend.close()
