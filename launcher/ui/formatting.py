"""Formatters: how a number, a duration, a size, an exit or a process is written wherever the
launcher shows one (the plain lines, the dashboard, the summary, the run reports)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def fmt_duration(seconds: float | None) -> str:
    """``7.25`` -> ``"7.2 s"``; ``75.3`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``; None -> ``"-"``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_num(value: float | None, spec: str = ".4g") -> str:
    """A number with ``spec`` (4 significant digits by default); None -> ``"-"``."""
    return "-" if value is None else format(value, spec)


def fmt_top1(value: float | None) -> str:
    """Accuracy as a percentage (fractions <= 1 are scaled)."""
    if value is None:
        return "-"
    return f"{value * 100:.2f}%" if value <= 1.0 else f"{value:.2f}%"


def fmt_loss(value: float | None) -> str:
    """A loss to 4 significant digits; None -> ``"-"``."""
    return "-" if value is None else f"{value:.4g}"


def fmt_when(when: datetime | None) -> str:
    """A run.json time in this host's local time, to the minute."""
    return "-" if when is None else when.astimezone().strftime("%Y-%m-%d %H:%M")


def fmt_bytes(value: int | None) -> str:
    """``431_000_000`` -> ``"411M"``; ``2.5e9`` -> ``"2.3G"``; None -> ``""``."""
    if value is None:
        return ""
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= size:
            amount = value / size
            return f"{amount:.1f}{unit}" if amount < 10 else f"{amount:.0f}{unit}"
    return f"{value}B"


def fmt_ago(seconds: float | None) -> str:
    """Seconds since something, short: ``0.4s``, ``12s``, ``3:05``; None -> ``""``."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    return fmt_duration(seconds)


def fmt_span(numbers: list[int]) -> str:
    """``[0, 1, 2, 3]`` -> ``"0-3"``; ``[5]`` -> ``"5"``; gaps -> ``"0-2,5"``."""
    numbers = sorted(numbers)
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ",".join(parts)


def exit_text(exit_code: int | None, signal: str | None) -> str:
    """``"exited with code 3"`` / ``"killed by SIGKILL"``."""
    if signal:
        return f"killed by {signal}"
    return f"exited with code {exit_code}"


def who(name: str, rank: int | None) -> str:
    """``"rank 3"`` for a worker, the process name (``"scheduler"``) otherwise."""
    return f"rank {rank}" if rank is not None else name


def cells(*values: Any) -> list[Any]:
    """Table cells that show data as it is: a ``str`` becomes a plain ``Text`` (Rich would read
    ``[...]`` in it as markup: ``ssh-keygen -R [node2]:22`` would lose ``[node2]``, and a
    ``[/x]`` would raise); other renderables pass through."""
    from rich.text import Text

    return [Text(v) if isinstance(v, str) else v for v in values]
