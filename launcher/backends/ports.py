"""Picking the scheduler's TCP port so that several runs on one host never collide.

A port is *reserved* by holding an exclusive ``flock`` on
``<tmp>/wrn-launch-ports-<uid>/<port>.lock`` for the launcher's lifetime (the kernel drops it
when the launcher dies, even by SIGKILL), and it must also be free to bind right now. Two
launchers of one user starting in the same instant thus get different ports even before either
scheduler has bound its own; the bind test covers every other program (and other users). The
lock folder is this user's own: created with mode 0700, used only when it is a real folder
owned by this user that nobody else can write to, its files opened without following links;
otherwise the bind test alone applies. Candidates are tried from a random point in the range.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import socket
import stat
import tempfile
from dataclasses import dataclass, field

from cluster.errors import PlanError

DEFAULT_PORT_RANGE = (29500, 29999)
LOCK_ROOT = tempfile.gettempdir()


def lock_dir() -> str:
    """This user's folder of port locks."""
    return os.path.join(LOCK_ROOT, f"wrn-launch-ports-{os.getuid()}")


def _private_dir(path: str) -> bool:
    """Create ``path`` (mode 0700) if missing; True when it is a folder, not a link, owned by
    this user and writable by nobody else."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def parse_port_range(text: str) -> tuple[int, int]:
    """``"29500-29999"`` -> (29500, 29999); a single port is a range of one."""
    lo, _, hi = str(text).partition("-")
    try:
        low, high = int(lo), int(hi or lo)
    except ValueError:
        raise PlanError(f"--port-range {text!r}: expected LOW-HIGH, e.g. 29500-29999") from None
    if not 1024 <= low <= high <= 65535:
        raise PlanError(f"--port-range {text!r}: ports must satisfy 1024 <= LOW <= HIGH <= 65535")
    return low, high


def port_is_free(port: int, host: str = "0.0.0.0") -> bool:
    """True if a TCP server could bind ``port`` now (SO_REUSEADDR, like most servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class PortReservation:
    """A port this process holds; ``release()`` (or process exit) frees it."""

    port: int
    _fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _lock(port: int) -> int | None:
    """Exclusive non-blocking lock for ``port``: its fd, -1 if locking is unavailable, None if taken."""
    folder = lock_dir()
    if not _private_dir(folder):
        return -1  # planted by someone else, or no /tmp: the bind test alone still applies
    try:
        fd = os.open(os.path.join(folder, f"{port}.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        return -1
    return fd


def _try(port: int) -> PortReservation | None:
    fd = _lock(port)
    if fd is None:
        return None
    if not port_is_free(port):
        if fd >= 0:
            os.close(fd)
        return None
    return PortReservation(port, fd if fd >= 0 else None)


def reserve_port(port: int | None = None, port_range: tuple[int, int] = DEFAULT_PORT_RANGE,
                 rng: random.Random | None = None) -> PortReservation:
    """Reserve ``port`` (must be free) or any free port of ``port_range``; PlanError if none."""
    if port is not None:
        got = _try(port)
        if got is None:
            raise PlanError(f"--port {port}: that port is in use on this host (by another program "
                            f"or another wrn-launch run); pick another port or leave --port out "
                            f"to get a free one from --port-range")
        return got
    low, high = port_range
    candidates = list(range(low, high + 1))
    start = (rng or random).randrange(len(candidates))
    for port in candidates[start:] + candidates[:start]:
        got = _try(port)
        if got is not None:
            return got
    raise PlanError(f"no free TCP port for the scheduler in {low}-{high}: every port there is in "
                    f"use or reserved by another run on this host; pass a wider or different "
                    f"--port-range (e.g. --port-range 30000-30999)")
