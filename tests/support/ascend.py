"""Stand-ins for an Ascend host's topology tools: an ``npu-smi`` that prints a recorded
``npu-smi info -t topo`` answer (or anything else), and a sysfs tree with Huawei accelerators
on the PCI bus and NUMA nodes with their CPU lists."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tests.support import FIXTURES

#: ``npu-smi info -t topo`` of an 8-device host: NPU0-1 near CPUs 0-23, 2-3 near 24-47,
#: 4-5 near 96-119, 6-7 near 120-143.
NPU_SMI_TOPO = FIXTURES / "npu_smi_topo.txt"


def fake_npu_smi(bin_dir: Path, output: str | None = None, exit_code: int = 0) -> Path:
    """An executable ``bin_dir/npu-smi`` that prints ``output`` (default: the recorded topology)
    for ``info -t topo`` and exits ``exit_code``; put ``bin_dir`` first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    answer = bin_dir / "npu-smi.out"
    answer.write_text(NPU_SMI_TOPO.read_text() if output is None else output)
    tool = bin_dir / "npu-smi"
    tool.write_text(f'#!/bin/sh\n[ "$*" = "info -t topo" ] || exit 3\ncat "{answer}"\n'
                    f"exit {exit_code}\n")
    tool.chmod(0o755)
    return tool


def fake_sysfs(root: Path, numa_of_device: Mapping[int, int | str],
               cpulists: Mapping[int, str], others: int = 2) -> Path:
    """A sysfs tree under ``root``: Ascend device k is the k-th Huawei accelerator by PCI
    address, on NUMA node ``numa_of_device[k]``; ``cpulists`` gives each node's cpulist;
    ``others`` unrelated PCI devices sit between them."""
    pci = root / "bus" / "pci" / "devices"
    for k, numa in numa_of_device.items():
        dev = pci / f"0000:{0x81 + k * 8:02x}:00.0"
        dev.mkdir(parents=True)
        (dev / "vendor").write_text("0x19e5\n")
        (dev / "class").write_text("0x120000\n")
        (dev / "numa_node").write_text(f"{numa}\n")
    for i in range(others):
        dev = pci / f"0000:{0x01 + i:02x}:00.0"
        dev.mkdir(parents=True)
        (dev / "vendor").write_text("0x8086\n")
        (dev / "class").write_text("0x020000\n")
        (dev / "numa_node").write_text("0\n")
    for node, cpulist in cpulists.items():
        path = root / "devices" / "system" / "node" / f"node{node}"
        path.mkdir(parents=True)
        (path / "cpulist").write_text(f"{cpulist}\n")
    return root
