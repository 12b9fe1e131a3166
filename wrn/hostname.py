"""This host's name, the one way the project spells it (log file names, plans, events)."""

from __future__ import annotations

import socket


def host_name() -> str:
    """This host's short name, safe in a file name: the part before the first dot, with any
    character other than letters, digits, ``-`` and ``_`` replaced by ``_``."""
    short = socket.gethostname().split(".")[0] or "localhost"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in short)


def local_names() -> set[str]:
    """Every name under which this host may appear in a plan or a hostfile."""
    full = socket.gethostname()
    return {full, full.split(".")[0] or "localhost", host_name(), "localhost", "127.0.0.1"}
