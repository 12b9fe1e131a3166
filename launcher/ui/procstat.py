"""Sampling a running process from ``/proc`` (on this host only): its resident memory for the
dashboard's ``mem`` column."""

from __future__ import annotations


def read_rss(pid: int | None) -> int | None:
    """Resident memory of ``pid`` in bytes from ``/proc/<pid>/status`` (None if unreadable)."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
