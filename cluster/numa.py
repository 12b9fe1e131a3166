"""Which host CPUs sit near each Ascend device, and how a host's ranks share them.

An Ascend worker's host threads (the input pipeline, graph launch, HCCL's helpers) run fastest
on the CPUs of its device's NUMA node, as msrun's ``--bind_core`` arranges. The topology comes
from, in this order:

* ``npu-smi info -t topo``: its matrix ends every ``NPU<k>`` row with the device's
  ``CPU Affinity`` (a CPU list such as ``0-23`` or ``0-23,96-119``);
* sysfs: the Huawei accelerators among ``/sys/bus/pci/devices/*`` (vendor ``0x19e5``, class
  ``0x12....``) in PCI address order are devices 0, 1, ...; each one's ``numa_node`` names
  ``/sys/devices/system/node/node<N>/cpulist``.

``numa_core_sets`` splits each NUMA node's CPUs evenly between the ranks whose devices sit on
it. Parsers raise ``PlanError`` naming the source and the bad text; nothing here binds anything
(the worker binds itself, see ``wrn.dist.bind_to_cores``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cluster.errors import PlanError

#: Upper bound on CPU numbers (Linux's default NR_CPUS limit is far below it).
MAX_CPU = 65535
#: PCI vendor id of Huawei (Ascend devices).
HUAWEI_VENDOR = "0x19e5"
#: PCI class prefix of processing accelerators.
ACCELERATOR_CLASS = "0x12"

_CPU_RANGE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?\Z")
_NPU_ROW = re.compile(r"NPU([0-9]{1,4})\s")


@dataclass(frozen=True)
class Topology:
    """Device id -> the CPUs near it, and where that was read (for the plan view)."""

    source: str
    cpus: Mapping[int, tuple[int, ...]]


def parse_cpulist(text: str, source: str) -> tuple[int, ...]:
    """``"0-3,8,10-11"`` (the kernel's cpulist format) -> sorted CPU numbers."""
    raw = text.strip() if isinstance(text, str) else ""
    hint = f"{source}: {text!r} is not a CPU list like 0-23,48-71"
    if not raw:
        raise PlanError(f"{source}: the CPU list is empty")
    cpus: set[int] = set()
    for part in raw.split(","):
        match = _CPU_RANGE.match(part.strip())
        if not match:
            raise PlanError(hint)
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo or hi > MAX_CPU:
            raise PlanError(hint)
        cpus.update(range(lo, hi + 1))
    return tuple(sorted(cpus))


def parse_npu_smi_topo(text: str, source: str = "npu-smi info -t topo") -> dict[int, tuple[int, ...]]:
    """Device id -> CPU affinity from ``npu-smi info -t topo`` output.

    Only the header's ``CPU Affinity`` column is read: every ``NPU<k>`` row's last field.
    """
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if "CPU Affinity" in line), None)
    if header is None:
        raise PlanError(f"{source}: no 'CPU Affinity' column in its output; this npu-smi does not "
                        f"report device-to-CPU affinity (use --no-bind-cores)")
    out: dict[int, tuple[int, ...]] = {}
    for line in lines[header + 1:]:
        match = _NPU_ROW.match(line.strip() + " ")
        if not match:
            continue
        device = int(match.group(1))
        fields = line.split()
        if len(fields) < 2:
            raise PlanError(f"{source}: row {line.strip()!r} has no CPU affinity")
        if device in out:
            raise PlanError(f"{source}: NPU{device} is listed twice")
        out[device] = parse_cpulist(fields[-1], f"{source}: NPU{device}'s CPU affinity")
    if not out:
        raise PlanError(f"{source}: no NPU<k> rows under its 'CPU Affinity' header")
    return out


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def sysfs_device_cpus(sys_dir: str = "/sys") -> dict[int, tuple[int, ...]]:
    """Device id -> CPUs of its NUMA node, from sysfs under ``sys_dir``; {} when no Ascend
    device is on the PCI bus there or the kernel knows no NUMA node for them."""
    pci = os.path.join(sys_dir, "bus", "pci", "devices")
    try:
        addresses = sorted(os.listdir(pci))
    except OSError:
        return {}
    accelerators = [a for a in addresses
                    if _read(os.path.join(pci, a, "vendor")) == HUAWEI_VENDOR
                    and (_read(os.path.join(pci, a, "class")) or "").startswith(ACCELERATOR_CLASS)]
    out: dict[int, tuple[int, ...]] = {}
    for device, address in enumerate(accelerators):
        where = os.path.join(pci, address, "numa_node")
        raw = _read(where)
        if raw is None or raw.strip() == "-1":
            continue  # no NUMA information for this device
        if not re.fullmatch(r"[0-9]{1,4}", raw):
            raise PlanError(f"{where}: {raw!r} is not a NUMA node number")
        cpulist = os.path.join(sys_dir, "devices", "system", "node", f"node{raw}", "cpulist")
        text = _read(cpulist)
        if text is None:
            raise PlanError(f"{cpulist}: cannot read it (device {device} at {address} is on NUMA "
                            f"node {raw})")
        out[device] = parse_cpulist(text, cpulist)
    return out


def _npu_smi_topo(npu_smi: str, timeout: float) -> str | None:
    if shutil.which(npu_smi) is None:
        return None
    try:
        out = subprocess.run([npu_smi, "info", "-t", "topo"], capture_output=True, text=True,
                             timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def read_topology(sys_dir: str = "/sys", npu_smi: str = "npu-smi",
                  timeout: float = 20.0) -> Topology | None:
    """This host's device-to-CPU topology: ``npu-smi info -t topo`` when it answers, else
    sysfs; None when neither knows. A malformed answer raises ``PlanError``."""
    text = _npu_smi_topo(npu_smi, timeout)
    if text is not None:
        return Topology("npu-smi info -t topo", parse_npu_smi_topo(text))
    cpus = sysfs_device_cpus(sys_dir)
    if cpus:
        return Topology(f"{sys_dir}/bus/pci/devices/*/numa_node", cpus)
    return None


def numa_core_sets(device_ids: Sequence[int], affinity: Mapping[int, Sequence[int]],
                   usable: Sequence[int]) -> list[tuple[int, ...] | None]:
    """Cores for each device's worker: the usable CPUs near it, split evenly (contiguous
    blocks, in device order) between the devices that share them. None for a device whose
    neighbourhood is unknown or has no usable CPU (that worker is left unbound)."""
    allowed = set(usable)
    near = {d: tuple(c for c in affinity.get(d, ()) if c in allowed) for d in device_ids}
    groups: dict[tuple[int, ...], list[int]] = {}
    for d in device_ids:
        if near[d]:
            groups.setdefault(near[d], []).append(d)
    out: dict[int, tuple[int, ...]] = {}
    for cpus, members in groups.items():
        size = max(1, len(cpus) // len(members))
        for i, d in enumerate(members):
            start = (i * size) % len(cpus)
            out[d] = tuple(sorted(cpus[start:start + size]))
    return [out.get(d) for d in device_ids]
