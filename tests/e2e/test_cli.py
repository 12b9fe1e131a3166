"""``wrn-launch`` as a user meets it: dry runs, bad input (one message, exit 2, nothing
started), subcommands. Every test runs the real command line in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.cli import main
from tests.support.ascend import fake_npu_smi, fake_sysfs
from tests.support.launches import fake_args
from tests.support.processes import fake_env

HCCN = "".join(f"address_{i}=192.98.92.{100 + i}\nnetmask_{i}=255.255.255.0\n" for i in range(8))


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], cwd=cwd, env=env or fake_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def ascend_host(tmp_path):
    """Fixture files standing in for an 8-device Ascend host: /dev/davinci0-7 and hccn.conf."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in [f"davinci{i}" for i in range(8)] + ["davinci_manager", "devmm_svm"]:
        (dev / name).touch()
    conf = tmp_path / "hccn.conf"
    conf.write_text(HCCN)
    return dev, conf


def test_dry_run_ascend_8_on_this_machine(tmp_path):
    """``--devices 0-7 --backend ascend --dry-run``: the dynamic-cluster plan by default."""
    run_dir = tmp_path / "run"
    res = cli("--dry-run", "--backend", "ascend", "--devices", "0-7", "--run-dir", str(run_dir),
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "backend: Ascend" in out
    assert "startup: dynamic cluster (scheduler + MS_WORKER per device)" in out
    assert "\x1b" not in out
    for k in range(8):
        assert f"DEVICE_ID={k} LOCAL_RANK={k} MS_NODE_ID={k} RANK_ID={k}" in out
    for line in ("MS_ROLE=MS_WORKER", "MS_SCHED_HOST=127.0.0.1", "MS_WORKER_NUM=8", "RANK_SIZE=8"):
        assert f"  {line}\n" in out
    assert "  MS_SCHED_PORT=" in out and "  HCCL_CONNECT_TIMEOUT=" in out
    assert "scheduler: " in out and "-m wrn.scheduler" in out
    assert "removed if set: RANK_TABLE_FILE MINDSPORE_HCCL_CONFIG_PATH" in out
    assert "rank table (" not in out and "hccn.conf" not in out  # no device IPs needed
    assert "this host has no Ascend devices" in out
    assert not run_dir.exists()
    assert not (tmp_path / "runs").exists()  # nothing created or started


def test_dry_run_ascend_rank_table_startup(tmp_path):
    """``--ascend-startup ranktable``: today's startup, RANK_TABLE_FILE and no scheduler."""
    run_dir = tmp_path / "run"
    res = cli("--dry-run", "--backend", "ascend", "--devices", "0-7", "--ascend-startup",
              "ranktable", "--run-dir", str(run_dir), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "startup: HCCL rank table (RANK_TABLE_FILE, no scheduler)" in out
    for k in range(8):
        assert f"DEVICE_ID={k} LOCAL_RANK={k} RANK_ID={k}" in out
    assert f"RANK_TABLE_FILE={run_dir}/rank_table.json" in out
    assert "RANK_SIZE=8" in out
    assert "MS_ROLE" not in out.split("removed if set:")[0]
    assert "scheduler" not in out.split("commands:")[1].split("rank table (")[0]
    assert "removed if set: MS_ROLE MS_SCHED_HOST MS_SCHED_PORT MS_WORKER_NUM MS_NODE_ID" in out
    assert "/etc/hccn.conf does not exist" in out
    assert '"device_ip": "0.0.0.0"' in out  # placeholder, with the warning above
    assert not run_dir.exists()


def test_dry_run_ascend_dynamic_cluster_with_rank_table(tmp_path, ascend_host):
    dev, conf = ascend_host
    res = cli("--dry-run", "--backend", "ascend", "--devices", "0-3", "--hccl-rank-table",
              "--hccn-conf", str(conf), "--dev-dir", str(dev), "--run-dir", str(tmp_path / "r"),
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "startup: dynamic cluster (scheduler + MS_WORKER per device) + HCCL rank table" in out
    assert "  MS_ROLE=MS_WORKER\n" in out
    assert f"  RANK_TABLE_FILE={tmp_path}/r/rank_table.json\n" in out
    assert '{"device_id": "3", "device_ip": "192.98.92.103", "rank_id": "3"}' in out
    bad = cli("--dry-run", "--backend", "ascend", "--ascend-startup", "msrun", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'msrun'" in bad.stderr


def test_dry_run_ascend_with_fixture_devices(tmp_path, ascend_host):
    dev, conf = ascend_host
    res = cli("--dry-run", "--backend", "ascend", "--devices", "4-7", "--hccn-conf", str(conf),
              "--dev-dir", str(dev), "--ascend-startup", "ranktable", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "DEVICE_ID=7 LOCAL_RANK=3 RANK_ID=3" in res.stdout
    assert '{"device_id": "7", "device_ip": "192.98.92.107", "rank_id": "3"}' in res.stdout
    assert "warning:" not in res.stdout
    auto = cli("--dry-run", "--devices", "2", "--hccn-conf", str(conf), "--dev-dir", str(dev), cwd=tmp_path)
    assert "backend: Ascend" in auto.stdout
    assert "chosen: detected" in auto.stdout


def test_dry_run_binds_ascend_ranks_to_their_numa_cpus(tmp_path):
    """A fake npu-smi on PATH (its topology: NPU0-1 near CPUs 0-23 ...), then a fake sysfs."""
    bin_dir = tmp_path / "bin"
    fake_npu_smi(bin_dir)
    env = fake_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    usable = sorted(os.sched_getaffinity(0))
    res = cli("--dry-run", "--backend", "ascend", "--devices", "0-7", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert "core binding: each rank on its device's NUMA CPUs (npu-smi info -t topo)" in res.stdout
    near0 = [c for c in range(24) if c in usable]
    if near0:  # this host's CPUs 0-23 that are usable, shared by ranks 0 and 1
        size = max(1, len(near0) // 2)
        assert f"WRN_BIND_CPUS={','.join(map(str, near0[:size]))}" in res.stdout
    off = cli("--dry-run", "--backend", "ascend", "--devices", "0-7", "--no-bind-core",
              cwd=tmp_path, env=env)
    assert off.returncode == 0 and "WRN_BIND_CPUS" not in off.stdout
    assert "core binding" not in off.stdout
    # a broken answer: an error with --bind-cores, a warning (and no binding) without
    fake_npu_smi(bin_dir, "  NPU0  CPU Affinity\nNPU0  X  0-zz\n")
    bad = cli("--dry-run", "--backend", "ascend", "--devices", "2", "--bind-cores", cwd=tmp_path,
              env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "wrn-launch: error: --bind-cores: npu-smi info -t topo: NPU0's CPU affinity: '0-zz' is "
        "not a CPU list like 0-23,48-71; fix that, or pass --no-bind-cores")
    lenient = cli("--dry-run", "--backend", "ascend", "--devices", "2", cwd=tmp_path, env=env)
    assert lenient.returncode == 0 and "warning: Ascend workers are not bound to cores" in lenient.stdout
    # no npu-smi: sysfs (--sys-dir stands in for /sys)
    sys_dir = fake_sysfs(tmp_path / "sys", {0: 0, 1: 1}, {0: usable[0], 1: usable[-1]})
    res = cli("--dry-run", "--backend", "ascend", "--devices", "0-1", "--sys-dir", str(sys_dir),
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"core binding: each rank on its device's NUMA CPUs ({sys_dir}/bus/pci" in res.stdout
    assert f"WRN_BIND_CPUS={usable[0]}" in res.stdout and f"WRN_BIND_CPUS={usable[-1]}" in res.stdout


@pytest.mark.slow  # among the longest of the fast tier: keeps `make test-fast` under 3 minutes
def test_dry_run_cpu_and_gpu(tmp_path):
    cpu = cli("--dry-run", "--devices", "3", "--threads-per-worker", "2", "--bind-cores", cwd=tmp_path)
    assert cpu.returncode == 0, cpu.stderr
    for k in range(3):
        assert f"MS_NODE_ID={k} RANK_ID={k}" in cpu.stdout
    assert "MS_ROLE=MS_WORKER" in cpu.stdout
    assert "MS_WORKER_NUM=3" in cpu.stdout
    assert "OMP_NUM_THREADS=2" in cpu.stdout
    assert "-m wrn.scheduler" in cpu.stdout
    # the pinned MindSpore cannot use a GPU: a clear error even for a dry run
    gpu = cli("--dry-run", "--backend", "gpu", "--devices", "2", cwd=tmp_path)
    assert gpu.returncode == 2
    msg = gpu.stderr.strip()
    assert msg.startswith("wrn-launch: error: the GPU backend was chosen (--backend) but the "
                          "installed MindSpore 2.")
    assert "cannot use a GPU" in msg and "Use --backend cpu" in msg and "\n" not in msg
    assert gpu.stdout == ""


@pytest.mark.parametrize("args, words", [
    (["--devices", "0"], "at least one device"),
    (["--devices", "3-1"], "runs backwards"),
    (["--devices", "two"], "neither a device id"),
    (["--backend", "gpu", "--devices", "2"], "cannot use a GPU"),
    (["--backend", "ascend", "--devices", "8"], "has no Ascend devices (looked for /dev/davinci<N>)"),
    (["--set", "lr=abc"], "'lr' must be a number"),
    (["--set", "lrr=0.1"], "did you mean 'lr'"),
    (["--config", "missing.yaml"], "missing.yaml does not exist"),
    (["--set", "data_path=/no/such/dir"], "/no/such/dir"),
    (["--stall-timeout", "10", "--stall-kill", "5"], "must be longer than --stall-timeout"),
    (["--port-range", "80-90"], "1024 <= LOW"),
    (["--set", "device_target=GPU", "--backend", "cpu"], "contradicts device_target"),
    (["--devices", "2", "--grace", "-1"], "seconds cannot be negative"),
])
def test_bad_input_is_one_message_and_exit_2(tmp_path, args, words):
    res = cli(*fake_args(*args, "--name", "bad"), cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert words in res.stderr
    msg = res.stderr.strip()
    assert msg.startswith("wrn-launch: error:")
    assert "\n" not in msg
    assert "Traceback" not in msg
    assert res.stdout == ""
    assert not (tmp_path / "runs").exists()  # nothing created, nothing started


def test_bad_devices_on_a_fixture_ascend_host(tmp_path, ascend_host):
    dev, conf = ascend_host
    for devices, words in (("16", "asked for 16 Ascend device(s) but this host has 8"),
                           ("0-3,9", "unknown Ascend device id(s) 9")):
        res = cli("--backend", "ascend", "--devices", devices, "--dev-dir", str(dev), "--hccn-conf",
                  str(conf), "--dry-run", cwd=tmp_path)
        assert res.returncode == 2
        assert words in res.stderr
        assert "\n" not in res.stderr.strip()
    res = cli("--backend", "ascend", "--devices", "2", "--dev-dir", str(dev), "--hccn-conf",
              str(tmp_path / "none.conf"), "--ascend-startup", "ranktable", cwd=tmp_path)
    assert res.returncode == 2
    assert "none.conf does not exist" in res.stderr


def test_port_in_use_and_range_exhausted(tmp_path):
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        for args, words in ((["--port", str(port)], "that port is in use"),
                            (["--port-range", f"{port}-{port}"], "no free TCP port")):
            res = cli(*fake_args("--devices", "2", "--name", "p", *args), cwd=tmp_path)
            assert res.returncode == 2, res.stderr
            assert words in res.stderr, res.stderr
            assert not (tmp_path / "runs").exists()


def test_run_dir_not_empty(tmp_path):
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    res = cli(*fake_args("--devices", "2", "--run-dir", str(run_dir)), cwd=tmp_path)
    assert res.returncode == 2
    assert "already exists and is not empty" in res.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["run.json"]


def test_default_run_dir_and_modelzoo_overrides(tmp_path):
    res = cli(*fake_args("--devices", "1", "--checkpoint_name=zoo", "--epoch_size", "2"),
              cwd=tmp_path, env=fake_env(steps=2))
    assert res.returncode == 0, res.stdout + res.stderr
    run_dir, = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("zoo-")
    assert len(run_dir.name) == len("zoo-20240101-120000")
    assert "epoch_size: 2" in (run_dir / "config.yaml").read_text()


def test_help_and_subcommand_errors(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "none")]) == 2
    assert "no such directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--devices" in text
    assert "--worker-cmd" not in text  # the test hook stays hidden


@pytest.mark.slow
def test_model_subcommand(tmp_path):
    res = cli("model", "wrn50_2", "--num-classes", "1000", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "trainable parameters: 68,883,240" in res.stdout.splitlines()
