"""Where a worker is, on request: its Python stacks (every thread) and its place in training.

The node agent gives each worker a file of its own (``WRN_STACKS_FILE``). ``install`` makes it
the worker's diagnostics file:

* its first ``HEADER_BYTES`` are a one-line header, ``MAGIC`` then the position (epoch, step,
  global step being worked on), rewritten through a shared memory map at every step (no
  system call: nothing to pay per step), so it can be read even from a worker that answers
  nothing;
* ``faulthandler`` is registered for ``STACKS_SIGNAL`` with the file as its output: on the
  signal, the C handler appends the stacks of every Python thread, even while the main thread
  is blocked inside MindSpore. The agent signals a worker only once the header shows the
  handler is in place (the signal's default action would end the process).

Without ``WRN_STACKS_FILE`` (a worker started by hand, or by msrun) ``install`` does nothing.
"""

from __future__ import annotations

import faulthandler
import mmap
import os
import signal
from typing import Any

from wrn.contract import STACKS_FILE_ENV

STACKS_SIGNAL = signal.SIGUSR1
MAGIC = b"wrn-stacks 1"
HEADER_BYTES = 256


class Position:
    """The header of a worker's diagnostics file, kept up to date by the training loop (a
    ``wrn.loop.Callback``: every hook the loop calls is here)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.map = mmap.mmap(fd, HEADER_BYTES)
        self.set("starting")

    def set(self, where: str) -> None:
        line = f"{MAGIC.decode()} pid={os.getpid()} {where}".encode()[:HEADER_BYTES - 1]
        self.map[:HEADER_BYTES] = line.ljust(HEADER_BYTES - 1) + b"\n"

    def _at(self, state: Any) -> None:
        self.set(f"epoch={state.epoch} step={state.step + 1} global_step={state.global_step + 1} "
                 f"steps_per_epoch={state.steps_per_epoch}")

    def on_epoch_begin(self, state: Any) -> None:
        self._at(state)

    def on_step_end(self, state: Any) -> None:
        if state.step >= state.steps_per_epoch:  # checkpoint and evaluation come next
            self.on_epoch_end(state)
        else:
            self._at(state)

    def on_epoch_end(self, state: Any) -> None:
        self.set(f"epoch={state.epoch} end_of_epoch global_step={state.global_step} "
                 f"steps_per_epoch={state.steps_per_epoch}")

    def on_finish(self, state: Any) -> None:
        self.set(f"finishing global_step={state.global_step}")

    def on_event(self, kind: str, fields: dict[str, Any]) -> None:
        pass


def install(environ: Any = None) -> Position | None:
    """Make ``WRN_STACKS_FILE`` this process's diagnostics file (see the module docstring);
    None when the variable is not set or the file cannot be used."""
    environ = os.environ if environ is None else environ
    path = environ.get(STACKS_FILE_ENV)
    if not path:
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        if os.fstat(fd).st_size < HEADER_BYTES:
            os.ftruncate(fd, HEADER_BYTES)
        faulthandler.register(STACKS_SIGNAL, file=fd, all_threads=True, chain=False)
        position = Position(fd)  # the header says "ready" only once the handler is in place
    except (OSError, ValueError, RuntimeError):
        return None
    return position
