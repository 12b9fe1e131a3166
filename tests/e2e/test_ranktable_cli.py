"""``wrn-launch ranktable ...`` and ``wrn-launch --rank-table FILE`` as a user meets them: real
command lines in subprocesses, fixture hccn.conf / device nodes, and the fake worker for the
runs (an Ascend-path run on fixture devices, a two-server table on CPU)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.ranktable.host import primary_ip
from tests.support import FIXTURES
from tests.support.launches import FAKE_SCHEDULER_CMD, FAKE_WORKER_CMD
from tests.support.processes import fake_env

HCCN_CONF = FIXTURES / "hccn.conf"
HCCL_TOOLS_8P = FIXTURES / "hccl_8p_01234567_10.155.111.140.json"
MERGE_HCCL_16P = FIXTURES / "hccl_2s_16p_merge_hccl.json"


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], cwd=cwd, env=env or fake_env(),
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(res: subprocess.CompletedProcess, words: str) -> None:
    assert res.returncode == 2, res.stdout + res.stderr
    msg = res.stderr.strip()
    assert words in msg, msg
    assert "\n" not in msg, msg
    assert "Traceback" not in msg, msg


def write_table(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, indent=4))
    return path


def small_table(server_ids, devices=2) -> dict:
    """A valid table: the servers given, ``devices`` devices each, distinct device IPs."""
    return {
        "version": "1.0", "server_count": str(len(server_ids)), "status": "completed",
        "server_list": [{"server_id": sid, "host_nic_ip": "reserve", "device": [
            {"device_id": str(d), "device_ip": f"192.168.{s}.{10 + d}", "rank_id": str(s * devices + d)}
            for d in range(devices)]} for s, sid in enumerate(server_ids)]}


# -- wrn-launch ranktable ---------------------------------------------------------------------------
def test_generate_like_hccl_tools(tmp_path):
    res = cli("ranktable", "--devices", "0-7", "--hccn-conf", str(HCCN_CONF), "--server-ip",
              "10.155.111.140", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / HCCL_TOOLS_8P.name  # hccl_8p_01234567_<ip>.json, as hccl_tools.py names it
    assert json.loads(out.read_text()) == json.loads(HCCL_TOOLS_8P.read_text())
    assert f"wrote {out.name}: 1 server(s), 8 rank(s) (device IPs from {HCCN_CONF})" in res.stdout


def test_generate_with_hccn_tool_and_errors(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "hccn_tool"
    tool.write_text("#!/bin/sh\necho \"ipaddr:10.30.0.$2\"\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    env = fake_env()
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    res = cli("ranktable", "--devices", "2", "--server-ip", "10.0.0.5", "-o", "t.json", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    devices = json.loads((tmp_path / "t.json").read_text())["server_list"][0]["device"]
    assert [d["device_ip"] for d in devices] == ["10.30.0.0", "10.30.0.1"]
    assert "device IPs from hccn_tool -i <n> -ip -g" in res.stdout
    one_line_error(cli("ranktable", "--devices", "0-9", "--hccn-conf", str(HCCN_CONF), "--server-ip",
                       "10.0.0.5", cwd=tmp_path), "no IP address for device(s) 8-9")
    one_line_error(cli("ranktable", "--devices", "2", "--hccn-conf", str(HCCN_CONF), "--server-ip",
                       "node1", cwd=tmp_path), "--server-ip 'node1' is not an IP address")
    loop = cli("ranktable", "--devices", "1", "--hccn-conf", str(HCCN_CONF), "--server-ip", "127.0.0.1",
               cwd=tmp_path)
    assert loop.returncode == 0
    assert "warning: server_id 127.0.0.1 is a loopback address" in loop.stdout


def test_merge_and_check(tmp_path):
    for ip, conf in (("10.0.0.1", HCCN_CONF), ("10.0.0.2", None)):
        if conf is None:  # the second server's NICs have other addresses
            conf = tmp_path / "hccn2.conf"
            conf.write_text(HCCN_CONF.read_text().replace("192.98.", "192.99."))
        res = cli("ranktable", "--devices", "8", "--hccn-conf", str(conf), "--server-ip", ip,
                  "-o", f"{ip}.json", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    res = cli("ranktable", "merge", "10.0.0.2.json", "10.0.0.1.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    merged = json.loads((tmp_path / "hccl_2s_16p.json").read_text())
    assert merged["server_list"][0]["server_id"] == "10.0.0.2"  # the order given
    assert merged["server_list"][1]["device"][0]["rank_id"] == "8"
    ok = cli("ranktable", "check", "hccl_2s_16p.json", cwd=tmp_path)
    assert ok.returncode == 0
    assert "ok: version 1.0, 2 server(s), 16 rank(s)" in ok.stdout
    assert "10.0.0.1: ranks 8-15 on device(s) 0-7" in ok.stdout
    dup = cli("ranktable", "merge", "10.0.0.1.json", "10.0.0.1.json", "-o", "x.json", cwd=tmp_path)
    one_line_error(dup, "server 10.0.0.1 is in both 10.0.0.1.json and 10.0.0.1.json")
    assert not (tmp_path / "x.json").exists()


def test_check_accepts_modelzoo_files_and_lists_problems(tmp_path):
    res = cli("ranktable", "check", str(HCCL_TOOLS_8P), cwd=tmp_path)
    assert res.returncode == 0
    assert "note:" not in res.stdout
    res = cli("ranktable", "check", str(MERGE_HCCL_16P), cwd=tmp_path)
    assert res.returncode == 0
    assert "note: rank_id values are numbers" in res.stdout
    data = json.loads(HCCL_TOOLS_8P.read_text())
    data["server_count"] = "2"
    data["server_list"][0]["device"][3]["rank_id"] = "2"
    bad = write_table(tmp_path / "bad.json", data)
    res = cli("ranktable", "check", str(bad), cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith(f"{bad}: server_count: says 2 but server_list has 1 server(s); set it to \"1\"")
    assert lines[1].startswith(f"{bad}: server_list[0].device[3].rank_id: rank 2 is used twice")
    assert lines[-1] == f"wrn-launch ranktable check: {bad} has 3 problem(s)"  # + rank 3 missing
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    res = cli("ranktable", "check", str(broken), cwd=tmp_path)
    assert res.returncode == 2
    assert "is not valid JSON at line 1" in res.stderr


# -- wrn-launch --rank-table --------------------------------------------------------------------------
def test_dry_run_second_server_of_a_table(tmp_path):
    res = cli("--rank-table", str(MERGE_HCCL_16P), "--server-ip", "10.155.111.141", "--dry-run",
              "--hccl-connect-timeout", "600", "--plain", "--ascend-startup", "ranktable",
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "backend: Ascend" in out
    assert "chosen: --rank-table" in out
    assert "this host is server 10.155.111.141 (2 of 2), ranks 8-15 of 16" in out
    for k in range(8):
        assert f"DEVICE_ID={k} LOCAL_RANK={k} RANK_ID={8 + k}" in out
    assert "RANK_SIZE=16" in out
    assert "HCCL_CONNECT_TIMEOUT=600" in out
    assert "HCCL_EXEC_TIMEOUT=1836" in out
    assert '{"device_id": "0", "device_ip": "192.98.92.110", "rank_id": "8"}' in out  # strings again
    assert not (tmp_path / "runs").exists()


def test_dry_run_second_server_of_a_table_as_a_dynamic_cluster(tmp_path):
    """The default startup with a given table: the workers join the scheduler on the server
    holding rank 0 (started by that server's launch) and HCCL also gets the table."""
    res = cli("--rank-table", str(MERGE_HCCL_16P), "--server-ip", "10.155.111.141", "--dry-run",
              "--plain", "--port", "29611", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "startup: dynamic cluster (scheduler + MS_WORKER per device) + HCCL rank table" in out
    for k in range(8):
        assert f"DEVICE_ID={k} LOCAL_RANK={k} MS_NODE_ID={8 + k} RANK_ID={8 + k}" in out
    for line in ("MS_SCHED_HOST=10.155.111.140", "MS_SCHED_PORT=29611", "MS_WORKER_NUM=16",
                 "RANK_SIZE=16", "MS_ROLE=MS_WORKER"):
        assert f"  {line}\n" in out
    assert "scheduler address: 10.155.111.140:29611 (not started)" in out
    assert "RANK_TABLE_FILE=" in out
    one_line_error(cli("--rank-table", str(MERGE_HCCL_16P), "--server-ip", "10.155.111.141",
                       "--dry-run", cwd=tmp_path), "pass the same --port P to the launch on every "
                                                  "server (or --ascend-startup ranktable on Ascend)")


def test_this_host_found_by_its_hccn_conf(tmp_path):
    res = cli("--rank-table", str(MERGE_HCCL_16P), "--hccn-conf", str(HCCN_CONF), "--dry-run",
              "--plain", "--ascend-startup", "ranktable", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "this host is server 10.155.111.140 (1 of 2), ranks 0-7 of 16" in res.stdout


@pytest.mark.parametrize("args, words", [
    (["--server-ip", "10.155.111.140"], "the Ascend backend was chosen (--rank-table) but this host has "
                                        "no Ascend devices"),
    (["--server-ip", "10.155.111.140", "--dry-run", "--hccl-connect-timeout", "60"],
     "--hccl-connect-timeout 60: HCCL accepts 120-7200 seconds"),
    (["--devices", "2"], "already says which devices this host runs; drop --devices 2"),
    (["--dry-run", "--hccn-conf", "/nonexistent/hccn.conf"], "this host is none of its servers"),
    (["--server-ip", "10.155.111.141", "--backend", "cpu"], "pass the same --port P to the launch on "
                                                            "every server"),
])
def test_rank_table_launch_errors(tmp_path, args, words):
    t0 = time.monotonic()
    one_line_error(cli("--rank-table", str(MERGE_HCCL_16P), *args, cwd=tmp_path), words)
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "runs").exists()


def test_bad_table_is_one_message(tmp_path):
    data = json.loads(HCCL_TOOLS_8P.read_text())
    data["version"] = "2.0"
    data["server_list"][0]["device"][1]["device_id"] = "0"
    bad = write_table(tmp_path / "bad.json", data)
    res = cli("--rank-table", str(bad), "--dry-run", cwd=tmp_path)
    one_line_error(res, f"rank table {bad} has 2 problems: (1) version: ")
    assert "(2) server_list[0].device[1].device_id: device 0 is listed twice" in res.stderr


@pytest.mark.parametrize("startup", ["ranktable", "dynamic"])
def test_ascend_path_runs_on_fixture_devices(tmp_path, startup):
    """The Ascend launch path for real (rank table in the run directory, RANK_TABLE_FILE,
    RANK_ID/DEVICE_ID from the table), with fixture device nodes and the fake worker; in
    both startups (the dynamic cluster's scheduler is not started: the fake workers need
    none)."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("davinci4", "davinci5", "davinci_manager"):
        (dev / name).touch()
    table = small_table(["10.0.0.7"])
    for d in table["server_list"][0]["device"]:
        d["device_id"] = str(int(d["device_id"]) + 4)
    path = write_table(tmp_path / "t.json", table)
    run_dir = tmp_path / "run"
    res = cli("--rank-table", str(path), "--server-ip", "10.0.0.7", "--dev-dir", str(dev), "--run-dir",
              str(run_dir), "--plain", "--worker-cmd", FAKE_WORKER_CMD, "--scheduler-cmd", "none",
              "--ascend-startup", startup, cwd=tmp_path, env=fake_env(steps=2, step_s=0.01))
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads((run_dir / "rank_table.json").read_text()) == table
    record = json.loads((run_dir / "run.json").read_text())
    procs = record["plan"]["processes"]
    assert [(p["env"]["RANK_ID"], p["env"]["DEVICE_ID"]) for p in procs] == [("0", "4"), ("1", "5")]
    assert all(p["env"]["RANK_TABLE_FILE"] == str(run_dir / "rank_table.json") for p in procs)
    assert all(("MS_ROLE" in p["env"]) == (startup == "dynamic") for p in procs)
    assert record["status"] == "succeeded"
    assert record["plan"]["world_size"] == 2
    # the table's devices must exist here
    (dev / "davinci5").unlink()
    one_line_error(cli("--rank-table", str(path), "--server-ip", "10.0.0.7", "--dev-dir", str(dev),
                       cwd=tmp_path), "server 10.0.0.7 lists Ascend device(s) 5, but this host has 4")


def test_ascend_dynamic_cluster_launch_on_fixture_devices(tmp_path):
    """The default Ascend startup for real: the launcher starts the scheduler, the workers
    (fake, on fixture devices 2-3, bound by a fake npu-smi's topology) meet at it through
    MS_SCHED_HOST/PORT; no hccn.conf and no rank table are involved."""
    from tests.support.ascend import fake_npu_smi

    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("davinci2", "davinci3", "davinci_manager"):
        (dev / name).touch()
    env = fake_env(steps=2, step_s=0.01, connect=1)
    usable = sorted(os.sched_getaffinity(0))
    near = ",".join(map(str, usable))  # both devices near every usable CPU of this host
    fake_npu_smi(tmp_path / "bin", f"      NPU2   NPU3   CPU Affinity\nNPU2   X   HCCS   {near}\n"
                                   f"NPU3   HCCS   X   {near}\n")
    env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"
    run_dir = tmp_path / "run"
    res = cli("--backend", "ascend", "--devices", "2-3", "--dev-dir", str(dev), "--run-dir",
              str(run_dir), "--plain", "--hccn-conf", str(tmp_path / "none.conf"),
              "--worker-cmd", FAKE_WORKER_CMD, "--scheduler-cmd", FAKE_SCHEDULER_CMD,
              cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["plan"]["startup"] == "dynamic cluster (scheduler + MS_WORKER per device)"
    sched, *workers = record["plan"]["processes"]
    assert sched["role"] == "scheduler" and sched["env"]["MS_ROLE"] == "MS_SCHED"
    assert [(p["env"]["MS_NODE_ID"], p["env"]["DEVICE_ID"]) for p in workers] == [("0", "2"),
                                                                                 ("1", "3")]
    assert all(p["env"]["MS_SCHED_PORT"] == sched["env"]["MS_SCHED_PORT"] for p in workers)
    assert all("RANK_TABLE_FILE" not in p["env"] for p in workers)
    share = max(1, len(usable) // 2)
    assert [p["env"]["WRN_BIND_CPUS"] for p in workers] == [
        ",".join(map(str, usable[:share])), ",".join(map(str, usable[share:2 * share] or usable[:1]))]
    assert not (run_dir / "rank_table.json").exists()


def test_two_server_table_on_cpu(tmp_path):
    """One table, two launches (as on two servers): the rank-0 server's launch starts the
    scheduler, the other's workers join it; every worker sees RANK_SIZE 4."""
    here = primary_ip()
    if here.startswith("127."):
        pytest.skip("this host has no address other than loopback to stand for server 0")
    path = write_table(tmp_path / "t.json", small_table([here, "10.255.255.2"]))
    port = str(_free_port())
    common = ["--rank-table", str(path), "--backend", "cpu", "--port", port, "--plain",
              "--worker-cmd", FAKE_WORKER_CMD, "--scheduler-cmd", FAKE_SCHEDULER_CMD]
    env = fake_env(steps=2, step_s=0.01, connect=1)
    procs = []
    for ip in ("10.255.255.2", here):  # the second server may start first
        (tmp_path / ip).mkdir()
        procs.append(subprocess.Popen([sys.executable, "-m", "launcher.cli", *common, "--server-ip", ip,
                                       "--run-dir", str(tmp_path / ip / "run")], cwd=tmp_path / ip,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
    second = json.loads((tmp_path / "10.255.255.2" / "run" / "run.json").read_text())
    first = json.loads((tmp_path / here / "run" / "run.json").read_text())
    assert [p["rank"] for p in second["plan"]["processes"]] == [2, 3]
    assert [p["role"] for p in first["plan"]["processes"]] == ["scheduler", "worker", "worker"]
    for record in (first, second):
        for p in record["plan"]["processes"]:
            assert p["env"]["MS_SCHED_HOST"] == here
            assert p["env"]["MS_WORKER_NUM"] == "4"
            if p["role"] == "worker":
                assert p["env"]["RANK_SIZE"] == "4"
                assert p["env"]["MS_NODE_ID"] == str(p["rank"])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]
