"""The launch plan as data: device parsing, backend detection, ranks, environments, threads,
rank tables, ports and run directories. Pure functions; no process is started here."""

from __future__ import annotations

import json
import os
import random
import socket
import sys

import pytest

from cluster.devices import (
    DeviceRequest,
    detect_backend,
    format_ids,
    gpu_problem,
    list_devices,
    numbered_nodes,
    parse_devices,
    parse_nvidia_smi,
)
from cluster.errors import PlanError
from cluster.plan import (
    LaunchPlan,
    Node,
    PlanRequest,
    ProcessSpec,
    RankInfo,
    assign_ranks,
    core_sets,
    make_plan,
    thread_budget,
)
from cluster.ranktable.hccn import device_ips, parse_hccn_conf, read_hccn_conf
from cluster.ranktable.table import PLACEHOLDER_IP, TableDevice, TableServer, build_rank_table, rank_table_text
from launcher.backends.local import LocalBackend
from launcher.backends.ports import parse_port_range, reserve_port
from launcher.rundir.layout import RunDirLock, check_run_dir, create_run_dir, default_run_dir
from launcher.supervise.progress import RunProgress
from wrn.contract import event_from

HCCN_CONF = "".join(f"address_{i}=192.98.92.{100 + i}\nnetmask_{i}=255.255.255.0\n" for i in range(8))
RUN = "/runs/r1"


def fake_dev(tmp_path, *names):
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in names:
        (dev / name).touch()
    return str(dev)


def request(backend="cpu", devices=(0, 1), cpus=(0, 1), **kw):
    kw.setdefault("sched_port", None if kw.get("ascend_startup") == "ranktable" else 29500)
    if backend == "ascend":
        kw.setdefault("device_ips", {"h1": parse_hccn_conf(HCCN_CONF)})
    node = Node("h1", kw.pop("address", "10.0.0.1"), tuple(devices), tuple(cpus))
    scheduler = kw.pop("scheduler_cmd", (sys.executable, "-m", "wrn.scheduler"))
    return PlanRequest(backend=backend, nodes=(node,), run_dir=RUN, cwd="/srv/project",
                       worker_cmd=(sys.executable, "-m", "wrn.train"), scheduler_cmd=scheduler, **kw)


# -- --devices ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, count, ids", [
    ("8", 8, None), (" 2 ", 2, None), (8, 8, None),
    ("0-3,6", None, (0, 1, 2, 3, 6)), ("3,", None, (3,)), ("3-3", None, (3,)), ("6,0-1", None, (6, 0, 1)),
])
def test_parse_devices(text, count, ids):
    req = parse_devices(text)
    assert (req.count, req.ids) == (count, ids)


@pytest.mark.parametrize("text, words", [
    ("", "empty"), ("0", "at least one"), ("a", "neither"), ("3-1", "backwards"), ("1,1", "repeated"),
    ("-1", "neither"), ("99999", "between 1 and"), ("0-99999", "too large"), (",", "names no device"),
])
def test_parse_devices_errors(text, words):
    with pytest.raises(PlanError, match=words):
        parse_devices(text)


def test_resolve_against_available_devices():
    assert parse_devices("2").resolve([3, 1, 0], "gpu") == (0, 1)
    assert parse_devices("0-1,3").resolve([0, 1, 2, 3], "ascend") == (0, 1, 3)
    assert parse_devices("5").resolve(None, "cpu") == (0, 1, 2, 3, 4)  # CPU devices are logical
    with pytest.raises(PlanError, match=r"asked for 8 Ascend device\(s\) but this host has 4 .*0-3"):
        parse_devices("8").resolve([0, 1, 2, 3], "ascend")
    with pytest.raises(PlanError, match=r"unknown GPU device id\(s\) 6"):
        parse_devices("0-3,6").resolve([0, 1, 2, 3], "gpu")
    with pytest.raises(PlanError):
        DeviceRequest("x")


def test_format_ids():
    assert format_ids([6, 0, 1, 2, 3]) == "0-3,6"
    assert format_ids([1, 3]) == "1,3"


# -- backend detection ---------------------------------------------------------------------------
def test_detect_backend_from_device_nodes(tmp_path):
    nodes = [f"davinci{i}" for i in range(8)] + ["davinci_manager", "devmm_svm", "hisi_hdc"]
    ascend = fake_dev(tmp_path, *nodes)
    assert detect_backend(ascend, use_nvidia_smi=False) == "ascend"
    assert list_devices("ascend", ascend) == list(range(8))
    assert list_devices("cpu", ascend) is None


def test_detect_gpu_and_cpu(tmp_path):
    gpu = fake_dev(tmp_path, "nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-modeset")
    assert detect_backend(gpu, use_nvidia_smi=False, gpu_check=lambda: None) == "gpu"
    # NVIDIA devices, but a MindSpore that cannot use them: never picked
    assert detect_backend(gpu, use_nvidia_smi=False, gpu_check=lambda: "no plugin") == "cpu"
    assert list_devices("gpu", gpu, use_nvidia_smi=False) == [0, 1]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert detect_backend(str(empty), use_nvidia_smi=False) == "cpu"
    assert numbered_nodes(["davinci10", "davinci2", "davinci", "xdavinci1"], "davinci") == [2, 10]


@pytest.mark.slow  # among the longest of the fast tier: keeps `make test-fast` under 3 minutes
def test_installed_mindspore_cannot_use_a_gpu():
    """The pinned MindSpore 2.10 from PyPI: its GPU plugin does not load."""
    problem = gpu_problem()
    assert problem is not None and "cannot use a GPU" in problem
    assert "MindSpore 2." in problem


def test_gpu_probe_answers(tmp_path):
    def interpreter(name, body):
        path = tmp_path / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
        return str(path)

    able = interpreter("able", "echo '{\"version\": \"2.2.14\", \"gpu\": true}'")
    assert gpu_problem(able) is None
    broken = interpreter("broken", "echo 'ModuleNotFoundError: No module named mindspore' >&2; exit 1")
    assert gpu_problem(broken) == ("MindSpore could not be imported to ask whether it can use a "
                                   "GPU (ModuleNotFoundError: No module named mindspore)")
    assert "failed" in gpu_problem(str(tmp_path / "missing"))
    assert "could not be imported" in gpu_problem(interpreter("noise", "echo hello"))


def test_parse_nvidia_smi():
    text = ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)\nGPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2)\n"
            "  MIG 1g.10gb Device 0: (UUID: MIG-3)\n")
    assert parse_nvidia_smi(text) == [0, 1]


# -- ranks ---------------------------------------------------------------------------------------
def test_ranks_are_contiguous_per_host():
    nodes = (Node("a", "10.0.0.1", (4, 5, 6), (0,)), Node("b", "10.0.0.2", (0, 1), (0,)))
    ranks = assign_ranks(nodes)
    assert [r.rank for r in ranks] == [0, 1, 2, 3, 4]
    assert [(r.host, r.local_rank, r.node_rank, r.device_id) for r in ranks] == [
        ("a", 0, 0, 4), ("a", 1, 0, 5), ("a", 2, 0, 6), ("b", 0, 1, 0), ("b", 1, 1, 1)]


def test_plan_objects_validate_themselves():
    with pytest.raises(PlanError):
        RankInfo(-1, 0, 0, 0, "h")
    with pytest.raises(PlanError, match="repeat"):
        Node("h", "10.0.0.1", (0, 0), (0,))
    with pytest.raises(PlanError, match="scheduler has none"):
        ProcessSpec("scheduler", "scheduler", "h", 0, ("x",), {}, "/", "l")
    with pytest.raises(PlanError, match="strings"):
        ProcessSpec("rank0", "worker", "h", 0, ("x",), {"A": 1}, "/", "l")
    with pytest.raises(PlanError, match="unknown backend"):
        request(backend="tpu")
    with pytest.raises(PlanError, match="scheduler port"):
        request(sched_port=None)
    with pytest.raises(PlanError, match="no device IP"):
        request(backend="ascend", device_ips={}, ascend_startup="ranktable")
    plan = make_plan(request())
    with pytest.raises(PlanError, match="0..N-1"):
        LaunchPlan(plan.backend, RUN, plan.ranks[1:], plan.processes)
    spec = plan.processes[0]
    with pytest.raises(TypeError):
        spec.env["X"] = "1"  # frozen all the way down


# -- per-rank environment --------------------------------------------------------------------------
def test_cpu_plan_environment_and_argv():
    plan = make_plan(request(devices=(0, 1, 2, 3), cpus=tuple(range(8))))
    sched, *workers = plan.processes
    assert plan.scheduler == ("10.0.0.1", 29500)
    assert sched.role == "scheduler"
    assert sched.argv == (sys.executable, "-m", "wrn.scheduler")
    assert sched.env["MS_ROLE"] == "MS_SCHED"
    assert sched.env["MS_WORKER_NUM"] == "4"
    assert sched.log == "logs/scheduler.log"
    for k, proc in enumerate(workers):
        env = proc.env
        assert proc.rank == k
        assert proc.log == f"logs/h1-rank{k}.log"
        assert proc.argv == (sys.executable, "-m", "wrn.train", "--config", f"{RUN}/config.yaml",
                             "--output-dir", RUN)
        keys = ("MS_ROLE", "MS_SCHED_HOST", "MS_SCHED_PORT", "MS_WORKER_NUM", "MS_NODE_ID",
                "RANK_ID", "RANK_SIZE", "LOCAL_RANK", "DEVICE_ID")
        assert {key: env[key] for key in keys} == {
            "MS_ROLE": "MS_WORKER", "MS_SCHED_HOST": "10.0.0.1", "MS_SCHED_PORT": "29500",
            "MS_WORKER_NUM": "4", "MS_NODE_ID": str(k), "RANK_ID": str(k), "RANK_SIZE": "4",
            "LOCAL_RANK": str(k), "DEVICE_ID": str(k)}
        assert env["OMP_NUM_THREADS"] == env["WRN_NUM_THREADS"] == "2"
        assert env["GLOG_v"] == "3"
        assert env["PYTHONUNBUFFERED"] == "1"
        assert env["WRN_RUN_DIR"] == RUN
        assert "RANK_TABLE_FILE" not in env
        assert "RANK_TABLE_FILE" in proc.unset
    assert plan.rank_table is None
    assert plan.warnings == ()
    json.dumps(plan.to_dict())  # run.json-ready


def test_verbose_mindspore_keeps_glog_and_no_scheduler_when_asked():
    plan = make_plan(request(verbose_mindspore=True, scheduler_cmd=None))
    assert all("GLOG_v" not in p.env for p in plan.processes)
    assert [p.role for p in plan.processes] == ["worker", "worker"]
    assert plan.scheduler == ("10.0.0.1", 29500)  # the workers still know where it would be


def test_ascend_rank_table_startup_environment_and_rank_table():
    plan = make_plan(request(backend="ascend", devices=tuple(range(8)), cpus=tuple(range(16)),
                             ascend_startup="ranktable"))
    assert plan.startup.startswith("HCCL rank table")
    assert plan.scheduler is None
    assert all(p.role == "worker" for p in plan.processes)
    for k, proc in enumerate(plan.processes):
        assert proc.env["RANK_TABLE_FILE"] == f"{RUN}/rank_table.json"
        assert (proc.env["RANK_ID"], proc.env["DEVICE_ID"], proc.env["RANK_SIZE"]) == (str(k), str(k), "8")
        assert "MS_ROLE" not in proc.env
        assert "MS_ROLE" in proc.unset
    table = json.loads(plan.rank_table)
    assert table["version"] == "1.0"
    assert table["server_count"] == "1"
    assert table["status"] == "completed"
    server, = table["server_list"]
    assert server["server_id"] == "10.0.0.1"
    assert server["host_nic_ip"] == "reserve"
    assert server["device"] == [{"device_id": str(i), "device_ip": f"192.98.92.{100 + i}",
                                 "rank_id": str(i)} for i in range(8)]


def test_ascend_subset_of_devices():
    plan = make_plan(request(backend="ascend", devices=(4, 5, 6, 7), ascend_startup="ranktable"))
    assert [(p.env["RANK_ID"], p.env["DEVICE_ID"]) for p in plan.processes] == [
        ("0", "4"), ("1", "5"), ("2", "6"), ("3", "7")]
    devices = json.loads(plan.rank_table)["server_list"][0]["device"]
    assert [(d["device_id"], d["rank_id"], d["device_ip"]) for d in devices] == [
        ("4", "0", "192.98.92.104"), ("5", "1", "192.98.92.105"), ("6", "2", "192.98.92.106"),
        ("7", "3", "192.98.92.107")]


def test_ascend_dynamic_cluster_is_the_default():
    plan = make_plan(request(backend="ascend", devices=tuple(range(8)), cpus=tuple(range(16))))
    assert plan.startup == "dynamic cluster (scheduler + MS_WORKER per device)"
    assert plan.scheduler == ("10.0.0.1", 29500)
    sched, *workers = plan.processes
    assert sched.role == "scheduler" and sched.argv[-2:] == ("-m", "wrn.scheduler")
    assert sched.env["MS_ROLE"] == "MS_SCHED" and "RANK_TABLE_FILE" in sched.unset
    assert len(workers) == 8
    for k, proc in enumerate(workers):
        env = proc.env
        assert {key: env[key] for key in ("MS_ROLE", "MS_SCHED_HOST", "MS_SCHED_PORT",
                                          "MS_WORKER_NUM", "MS_NODE_ID", "DEVICE_ID", "RANK_ID",
                                          "RANK_SIZE", "LOCAL_RANK")} == {
            "MS_ROLE": "MS_WORKER", "MS_SCHED_HOST": "10.0.0.1", "MS_SCHED_PORT": "29500",
            "MS_WORKER_NUM": "8", "MS_NODE_ID": str(k), "DEVICE_ID": str(k), "RANK_ID": str(k),
            "RANK_SIZE": "8", "LOCAL_RANK": str(k)}
        assert "RANK_TABLE_FILE" not in env
        assert {"RANK_TABLE_FILE", "MINDSPORE_HCCL_CONFIG_PATH"} <= set(proc.unset)
        assert "MS_ROLE" not in proc.unset
    assert plan.rank_table is None
    assert plan.to_dict()["startup"] == plan.startup
    # no device IPs are needed without a rank table
    assert make_plan(request(backend="ascend", devices=(0, 1), device_ips={})).rank_table is None


def test_ascend_dynamic_cluster_with_a_rank_table_asked_for():
    plan = make_plan(request(backend="ascend", devices=(4, 5, 6, 7), hccl_rank_table=True))
    assert plan.startup.endswith("+ HCCL rank table (RANK_TABLE_FILE)")
    workers = [p for p in plan.processes if p.role == "worker"]
    assert all(p.env["RANK_TABLE_FILE"] == f"{RUN}/rank_table.json" for p in workers)
    assert all(p.env["MS_ROLE"] == "MS_WORKER" for p in workers)
    assert all("RANK_TABLE_FILE" not in p.unset and "MINDSPORE_HCCL_CONFIG_PATH" in p.unset
               for p in workers)
    devices = json.loads(plan.rank_table)["server_list"][0]["device"]
    assert [(d["device_id"], d["rank_id"]) for d in devices] == [("4", "0"), ("5", "1"),
                                                                 ("6", "2"), ("7", "3")]
    with pytest.raises(PlanError, match="no device IP"):
        request(backend="ascend", device_ips={}, hccl_rank_table=True)
    with pytest.raises(PlanError, match="ascend-startup"):
        request(backend="ascend", ascend_startup="msrun")


def test_single_ascend_worker_runs_standalone():
    plan = make_plan(request(backend="ascend", devices=(3,), sched_port=None))
    assert plan.startup.startswith("standalone") and plan.scheduler is None
    proc, = plan.processes
    assert proc.env["DEVICE_ID"] == "3" and "MS_ROLE" not in proc.env
    assert "MS_ROLE" in proc.unset and "RANK_TABLE_FILE" in proc.unset


# -- thread budget ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cores, workers, override, want", [
    (2, 2, None, 1), (16, 3, None, 5), (2, 8, None, 1), (8, 1, None, 8), (2, 2, 4, 4)])
def test_thread_budget(cores, workers, override, want):
    assert thread_budget(cores, workers, override) == want


def test_oversubscription_warnings():
    many = make_plan(request(devices=tuple(range(8)), cpus=(0, 1)))
    assert {p.env["OMP_NUM_THREADS"] for p in many.processes if p.role == "worker"} == {"1"}
    assert any("8 CPU workers on 2 core(s)" in w for w in many.warnings)
    forced = make_plan(request(threads_per_worker=4))
    assert forced.processes[1].env["WRN_NUM_THREADS"] == "4"
    assert any("oversubscribed" in w for w in forced.warnings)


def test_core_sets_and_bind_cores():
    assert core_sets(range(8), 2, 4) == [(0, 1, 2, 3), (4, 5, 6, 7)]
    assert core_sets([0, 1], 4, 1) == [(0,), (1,), (0,), (1,)]  # shared as evenly as possible
    plan = make_plan(request(devices=(0, 1), cpus=(2, 3, 4, 5), bind_cores=True))
    assert [p.cpus for p in plan.processes if p.role == "worker"] == [(2, 3), (4, 5)]
    assert all(p.cpus is None for p in make_plan(request(bind_cores=False)).processes)


def test_cpu_workers_are_bound_by_default_only_when_they_fit():
    workers = lambda plan: [p.cpus for p in plan.processes if p.role == "worker"]  # noqa: E731
    assert workers(make_plan(request())) == [(0,), (1,)]  # 2 workers, 2 cores
    # the workers bind themselves after joining the cluster (wrn.dist.bind_to_cores)
    assert [p.env["WRN_BIND_CPUS"] for p in make_plan(request()).processes if p.role == "worker"] == ["0", "1"]
    assert all("WRN_BIND_CPUS" not in p.env for p in make_plan(request(bind_cores=False)).processes)
    assert workers(make_plan(request(devices=(0, 1, 2), cpus=(0, 1)))) == [None] * 3  # would share
    assert workers(make_plan(request(threads_per_worker=2))) == [None, None]  # oversubscribed
    assert workers(make_plan(request(devices=(0,)))) == [None]  # one worker: nothing to separate
    assert workers(make_plan(request(backend="gpu"))) == [None, None]


# -- rank table ------------------------------------------------------------------------------------
def test_hccn_conf_parsing(tmp_path):
    conf = tmp_path / "hccn.conf"
    conf.write_text("# written by hccn_tool\n" + HCCN_CONF + "gateway_0=192.98.92.1\n")
    ips = read_hccn_conf(conf)
    assert ips == {i: f"192.98.92.{100 + i}" for i in range(8)}
    assert read_hccn_conf(tmp_path / "missing.conf") is None
    with pytest.raises(PlanError, match=r"line 2: '300.1.1.1' is not an IP"):
        parse_hccn_conf("address_0=192.98.92.100\naddress_1=300.1.1.1\n", "x.conf")


def test_device_ips_missing_file_or_address():
    with pytest.raises(PlanError, match="does not exist.*--hccn-conf"):
        device_ips([0, 1], None, "/etc/hccn.conf", allow_placeholder=False)
    ips, warnings = device_ips([0, 1], None, "/etc/hccn.conf", allow_placeholder=True)
    assert ips == {0: PLACEHOLDER_IP, 1: PLACEHOLDER_IP}
    assert "dry run" in warnings[0]
    with pytest.raises(PlanError, match=r"no address_<n> line for device\(s\) 1"):
        device_ips([0, 1], {0: "1.2.3.4"}, "c", allow_placeholder=False)


def test_rank_table_rules():
    dev = lambda d, r: TableDevice(d, f"192.98.92.{100 + d}", r)  # noqa: E731
    two = build_rank_table([TableServer("10.0.0.1", (dev(0, 0), dev(1, 1))),
                            TableServer("10.0.0.2", (dev(0, 2), dev(1, 3)))])
    assert two["server_count"] == "2"
    assert all(isinstance(v, str) for s in two["server_list"] for d in s["device"] for v in d.values())
    assert json.loads(rank_table_text(two)) == two
    with pytest.raises(PlanError, match="contiguous"):  # interleaved servers
        build_rank_table([TableServer("10.0.0.1", (dev(0, 0), dev(1, 2))),
                          TableServer("10.0.0.2", (dev(0, 1), dev(1, 3)))])
    with pytest.raises(PlanError, match="not an IP"):
        TableServer("host-a", (dev(0, 0),))


# -- ports -----------------------------------------------------------------------------------------
def _listening_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("0.0.0.0", 0))
    sock.listen(1)
    return sock


def test_reserve_port_gives_distinct_free_ports():
    lo = random.randrange(43000, 48000, 2)  # apart from other test runs on this host
    a = reserve_port(port_range=(lo, lo + 1), rng=random.Random(0))
    b = reserve_port(port_range=(lo, lo + 1), rng=random.Random(0))
    try:
        assert {a.port, b.port} == {lo, lo + 1}  # the first one's lock keeps it from the second
        with pytest.raises(PlanError, match=f"no free TCP port .* {lo}-{lo + 1}"):
            reserve_port(port_range=(lo, lo + 1))
    finally:
        a.release()
        b.release()
    reserve_port(port_range=(lo, lo)).release()  # free again once released


def test_reserve_port_in_use():
    with _listening_port() as sock:
        port = sock.getsockname()[1]
        with pytest.raises(PlanError, match=f"--port {port}: that port is in use"):
            reserve_port(port)
        with pytest.raises(PlanError, match="--port-range"):
            reserve_port(port_range=(port, port))


def test_parse_port_range():
    assert parse_port_range("29500-29999") == (29500, 29999)
    assert parse_port_range("30000") == (30000, 30000)
    for bad in ("a-b", "5-1", "80-90"):
        with pytest.raises(PlanError):
            parse_port_range(bad)


# -- run directory, backend, progress --------------------------------------------------------------
def test_run_dirs(tmp_path):
    import datetime as dt
    when = dt.datetime(2024, 5, 1, 12, 30, 45, tzinfo=dt.UTC)
    path = default_run_dir(tmp_path, "wrn-sample", when)
    assert path == tmp_path / "wrn-sample-20240501-123045"
    first, lock = create_run_dir(path, explicit=False)
    assert first == path
    assert RunDirLock.is_held(path)
    lock.release()
    assert not RunDirLock.is_held(path)
    second, lock = create_run_dir(path, explicit=False)
    assert second == tmp_path / "wrn-sample-20240501-123045-2"
    lock.release()
    (path / "run.json").write_text("{}")
    with pytest.raises(PlanError, match="already exists and is not empty"):
        check_run_dir(path)
    with pytest.raises(PlanError, match="cannot be used"):
        default_run_dir(tmp_path, "a/b")
    empty = tmp_path / "empty"
    empty.mkdir()
    made, lock = create_run_dir(empty, explicit=True)
    assert made == empty
    lock.release()


def test_local_backend_command():
    assert LocalBackend().agent_cmd("h1") == [sys.executable, "-P", "-m", "launcher.agent"]
    env = LocalBackend().agent_env("h1")
    assert env["PYTHONPATH"].split(os.pathsep)[0] == os.path.dirname(os.path.dirname(
        os.path.abspath(__import__("launcher").__file__)))


def test_progress_bookkeeping():
    p = RunProgress(world_size=2)
    for r in (0, 1):
        p.update(event_from({"event": "start", "rank": r, "epochs": 2, "steps_per_epoch": 10}), 0.0)
    def step(rank, global_step, loss, ips, now):
        p.update(event_from({"event": "step", "rank": rank, "epoch": 1, "global_step": global_step, "loss": loss,
                  "imgs_per_s": ips}), now)
    step(0, 1, 2.0, 90.0, 10.0)
    step(1, 1, 2.1, 110.0, 10.0)
    step(0, 5, 1.5, 100.0, 14.0)
    assert p.total_steps == 20
    assert p.done_steps == 5
    assert p.loss == 1.5
    assert p.imgs_per_s == pytest.approx(210.0)  # mean of the ranks' latest x world size
    assert p.eta_s(14.0) == pytest.approx(15.0)  # 4 steps took 4 s, 15 left
    for epoch, top1 in ((1, 0.7), (2, 0.6)):
        p.update(event_from({"event": "checkpoint", "rank": 0, "epoch": epoch, "path": f"e{epoch}.ckpt"}), 20.0)
        p.update(event_from({"event": "eval", "rank": 0, "epoch": epoch, "top1": top1}), 20.0)
    assert p.best_checkpoint() == "e1.ckpt"
    assert p.replicas_in_sync() is None
    p.update(event_from({"event": "finish", "rank": 0, "checksum": "x", "top1": 0.6}), 30.0)
    p.update(event_from({"event": "finish", "rank": 1, "checksum": "x", "top1": 0.6}), 30.0)
    assert p.replicas_in_sync() is True
    assert p.top1() == 0.6
    p.update(event_from({"event": "finish", "rank": 1, "checksum": "y", "top1": 0.6}), 30.0)
    assert p.replicas_in_sync() is False


def test_single_cpu_worker_runs_standalone():
    plan = make_plan(request(devices=(0,), sched_port=None))
    worker, = plan.processes
    assert plan.scheduler is None
    assert worker.role == "worker"
    assert not any(k.startswith("MS_") for k in worker.env)
    assert {"MS_ROLE", "MS_SCHED_PORT", "RANK_TABLE_FILE"} <= set(worker.unset)
    assert (worker.env["RANK_ID"], worker.env["RANK_SIZE"]) == ("0", "1")


def test_fast_start_env_cluster_waits_and_no_compile_cache():
    """Cluster processes get 1 s cluster waits; the user's own --env values win; a single worker
    has no cluster to wait for. MindSpore's compile cache stays off (it files graphs by compile
    order, so a resume mid-epoch loaded the wrong graph)."""
    plan = make_plan(request())
    for proc in plan.processes:
        assert proc.env["MS_RETRY_INTERVAL_LOWER"] == proc.env["MS_RETRY_INTERVAL_UPPER"] == "1"
        assert "MS_COMPILER_CACHE_ENABLE" not in proc.env
    mine = make_plan(request(extra_env={"MS_RETRY_INTERVAL_UPPER": "5"}))
    assert mine.worker(1).env["MS_RETRY_INTERVAL_UPPER"] == "5"
    single = make_plan(request(devices=(0,))).worker(0).env
    assert "MS_RETRY_INTERVAL_LOWER" not in single
