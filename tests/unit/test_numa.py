"""Binding Ascend ranks to the CPUs near their devices: the topology from ``npu-smi info -t
topo`` or sysfs (fixtures: a fake npu-smi on PATH, a fake sysfs tree), the even split of a
NUMA node's CPUs, and what the plan does with it."""

from __future__ import annotations

import dataclasses
import os
import sys

import pytest

from cluster.errors import PlanError
from cluster.numa import numa_core_sets, parse_cpulist, parse_npu_smi_topo, read_topology, sysfs_device_cpus
from cluster.plan import Node, PlanRequest, make_plan
from tests.support.ascend import NPU_SMI_TOPO, fake_npu_smi, fake_sysfs

NEAR = {0: range(0, 24), 1: range(0, 24), 2: range(24, 48), 3: range(24, 48),
        4: range(96, 120), 5: range(96, 120), 6: range(120, 144), 7: range(120, 144)}


@pytest.mark.parametrize("text, cpus", [
    ("0", (0,)), ("0-3", (0, 1, 2, 3)), ("0-1,8,10-11\n", (0, 1, 8, 10, 11)), (" 5 , 2 ", (2, 5))])
def test_parse_cpulist(text, cpus):
    assert parse_cpulist(text, "x") == cpus


@pytest.mark.parametrize("text, words", [
    ("", "empty"), ("a-b", "'a-b' is not a CPU list"), ("3-1", "'3-1'"), ("0,,2", "'0,,2'"),
    ("99999999", "not a CPU list"), ("-1", "not a CPU list")])
def test_bad_cpulist_is_named(text, words):
    with pytest.raises(PlanError, match=words):
        parse_cpulist(text, "/sys/devices/system/node/node0/cpulist")


def test_parse_npu_smi_topo_fixture():
    cpus = parse_npu_smi_topo(NPU_SMI_TOPO.read_text())
    assert cpus == {d: tuple(r) for d, r in NEAR.items()}


@pytest.mark.parametrize("text, words", [
    ("NPU0  X  0-23\n", "no 'CPU Affinity' column"),
    ("  NPU0  CPU Affinity\nLegend:\n", "no NPU<k> rows"),
    ("  NPU0  CPU Affinity\nNPU0  X  0-x\n", "NPU0's CPU affinity: '0-x' is not a CPU list"),
    ("  NPU0  CPU Affinity\nNPU0  X  0-3\nNPU0  X  0-3\n", "NPU0 is listed twice"),
])
def test_bad_npu_smi_output_is_named(text, words):
    with pytest.raises(PlanError, match=words) as info:
        parse_npu_smi_topo(text)
    assert str(info.value).startswith("npu-smi info -t topo: ")


def test_sysfs_topology(tmp_path):
    root = fake_sysfs(tmp_path, {0: 0, 1: 0, 2: 1, 3: -1}, {0: "0-7", 1: "8-15"})
    assert sysfs_device_cpus(str(root)) == {0: tuple(range(8)), 1: tuple(range(8)),
                                            2: tuple(range(8, 16))}  # device 3: unknown
    assert sysfs_device_cpus(str(tmp_path / "none")) == {}
    bad = fake_sysfs(tmp_path / "bad", {0: "zero"}, {})
    with pytest.raises(PlanError, match="numa_node: 'zero' is not a NUMA node number"):
        sysfs_device_cpus(str(bad))
    missing = fake_sysfs(tmp_path / "missing", {0: 3}, {})
    with pytest.raises(PlanError, match="node3/cpulist: cannot read it"):
        sysfs_device_cpus(str(missing))


def test_read_topology_prefers_npu_smi(tmp_path, monkeypatch):
    root = fake_sysfs(tmp_path / "sys", {0: 0}, {0: "0-3"})
    monkeypatch.setenv("PATH", f"{tmp_path / 'empty'}{os.pathsep}/usr/bin:/bin")
    sysfs = read_topology(str(root))
    assert sysfs.source.endswith("bus/pci/devices/*/numa_node") and sysfs.cpus == {0: (0, 1, 2, 3)}
    assert read_topology(str(tmp_path / "nothing")) is None
    fake_npu_smi(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin")
    topo = read_topology(str(root))
    assert topo.source == "npu-smi info -t topo" and topo.cpus[7] == tuple(range(120, 144))
    fake_npu_smi(tmp_path / "failing", exit_code=1)  # an npu-smi that fails: sysfs instead
    monkeypatch.setenv("PATH", f"{tmp_path / 'failing'}{os.pathsep}/usr/bin:/bin")
    assert read_topology(str(root)).cpus == {0: (0, 1, 2, 3)}


def test_numa_core_sets_split_each_node_evenly():
    sets = numa_core_sets(range(8), NEAR, range(192))
    assert sets[0] == tuple(range(0, 12)) and sets[1] == tuple(range(12, 24))
    assert sets[2] == tuple(range(24, 36)) and sets[7] == tuple(range(132, 144))
    assert len({c for s in sets for c in s}) == 8 * 12  # disjoint
    # a subset of devices: each gets its whole node when alone on it
    assert numa_core_sets([0, 2], NEAR, range(192)) == [tuple(range(24)), tuple(range(24, 48))]
    # only usable CPUs count; unknown or unusable neighbourhoods stay unbound
    assert numa_core_sets([0, 1, 4, 9], NEAR, range(0, 6)) == [(0, 1, 2), (3, 4, 5), None, None]
    # more devices than CPUs: they share
    assert numa_core_sets([0, 1, 2], {0: (0,), 1: (0,), 2: (0,)}, [0]) == [(0,), (0,), (0,)]


def _request(bind=None, near=NEAR, backend="ascend"):
    node = Node("h1", "10.0.0.1", tuple(range(8)), tuple(range(192)))
    return PlanRequest(backend=backend, nodes=(node,), run_dir="/runs/r", cwd="/srv",
                       worker_cmd=(sys.executable, "-m", "wrn.train"), sched_port=29500,
                       scheduler_cmd=None, bind_cores=bind,
                       device_cpus={"h1": {d: tuple(r) for d, r in near.items()}})


def test_plan_binds_ascend_ranks_near_their_devices():
    plan = make_plan(_request())
    rank0, rank5 = plan.worker(0), plan.worker(5)
    assert rank0.cpus == tuple(range(12)) and rank0.env["WRN_BIND_CPUS"] == ",".join(map(str, range(12)))
    assert rank5.cpus == tuple(range(108, 120))
    # 192 cores // 8 workers = 24 threads, capped at the 12 cores of its NUMA share
    assert rank0.threads == 12 and rank0.env["OMP_NUM_THREADS"] == "12"
    assert make_plan(_request(near={0: range(0, 48)})).worker(0).threads == 24  # a big share
    overridden = dataclasses.replace(_request(), threads_per_worker=20)
    assert make_plan(overridden).worker(0).threads == 20  # --threads-per-worker is the user's
    for bind in (False,):  # --no-bind-cores: left to the OS
        assert all(p.cpus is None and "WRN_BIND_CPUS" not in p.env
                   for p in make_plan(_request(bind=bind)).processes)
    # no topology: unbound by default, consecutive blocks with --bind-cores
    assert make_plan(_request(near={})).worker(1).cpus is None
    assert make_plan(_request(bind=True, near={})).worker(1).cpus == tuple(range(24, 48))
    # other backends ignore the Ascend topology
    assert make_plan(_request(backend="cpu", bind=False)).worker(1).cpus is None
