"""What the machines of a run are: CPU model, cores and memory, as run.json records them
(``machines``) for reports such as ``wrn-launch report --modelzoo`` (its "Resource" row).

Standard library only, read from ``/proc`` at launch time. Only the launching host is probed:
asking other hosts would cost a round trip per host, and the one number the launch already
has for each of them (the cores it plans on) is recorded instead; a report says the rest is
unknown rather than guessing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wrn.hostname import local_names

CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")


def cpu_model(cpuinfo: Path = CPUINFO) -> str | None:
    """The first ``model name`` of /proc/cpuinfo (x86; many ARM kernels write none: None)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return " ".join(value.split())
    return None


def memory_gib(meminfo: Path = MEMINFO) -> float | None:
    """MemTotal of /proc/meminfo in GiB, to 0.1 GiB; None when it cannot be read."""
    try:
        text = meminfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "MemTotal:" and parts[1].isdecimal():
            return round(int(parts[1]) / (1 << 20), 1)  # the kernel writes kB (KiB)
    return None


def this_host() -> dict[str, Any]:
    """This host: ``cpu`` (model name or None), ``cores`` (logical CPUs), ``memory_gib``."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": memory_gib()}


def machines(nodes: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """run.json's ``machines``: per host of the launch (``cluster.plan.Node``) the cores it
    runs on there (``usable_cores``), and for the launching host also ``this_host()``."""
    here = local_names()
    out: dict[str, dict[str, Any]] = {}
    for node in nodes:
        entry: dict[str, Any] = {"usable_cores": len(node.cpus)}
        if node.host in here:
            entry.update(this_host())
        out[node.host] = entry
    return out
