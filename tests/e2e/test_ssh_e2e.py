"""A real MindSpore data-parallel training over SSH: 2 hosts (127.0.0.1, 127.0.0.2) x 1 CPU
device (the built-in default, to its usual accuracy) and 2 x 2 devices (one epoch), the
scheduler on the first host; replicas must end bitwise in sync."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.processes import has_checkpoint_event, pid_alive, run_processes, wait_for
from tests.support.sshd import hostfile_launch

pytestmark = pytest.mark.slow


def train_over_ssh(tmp_path: Path, sshd, hosts: str,
                   *args: str) -> tuple[subprocess.CompletedProcess, Path, float]:
    """``wrn-launch --hostfile`` with the real worker in a bare environment, as a user would run
    it; returns the finished process, its run directory and the seconds it took."""
    hostfile = tmp_path / "hosts.txt"
    hostfile.write_text(hosts)
    run_dir = tmp_path / "run"
    argv, env = hostfile_launch(hostfile, sshd.ssh_config, run_dir, tmp_path, *args)
    t0 = time.monotonic()
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    return done, run_dir, time.monotonic() - t0


def all_gone(record: dict, run_dir: Path) -> bool:
    """True once no process or agent of the run is left on either host."""
    pids = [p["pid"] for p in record["processes"]] + [a["pid"] for a in record["agents"]]
    return not any(pid_alive(p) for p in pids) and not run_processes(run_dir)


def test_two_hosts_real_training(tmp_path, sshd):
    done, run_dir, seconds = train_over_ssh(tmp_path, sshd, "127.0.0.1 slots=1\n127.0.0.2 slots=1\n")
    print(f"2-host real training: {seconds:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["plan"]["hosts"] == ["127.0.0.1", "127.0.0.2"]
    assert "replicas in sync" in done.stdout
    assert json.loads((run_dir / "eval.json").read_text())["top1"] >= 0.90  # as on one host
    finishes = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    finishes = [e for e in finishes if e["event"] == "finish"]
    assert len(finishes) == 2
    assert finishes[0]["checksum"] == finishes[1]["checksum"]
    assert {e["host"] for e in finishes} == {"127.0.0.1", "127.0.0.2"}
    for name in ("127.0.0.1-rank0.log", "127.0.0.2-rank1.log", "scheduler.log"):
        assert (run_dir / "logs" / name).exists()
    assert list((run_dir / "checkpoints").glob("*.ckpt"))
    assert wait_for(lambda: all_gone(record, run_dir), 5)

    # the same two hosts evaluate the run's best checkpoint: exactly the in-training count
    argv, env = hostfile_launch(tmp_path / "hosts.txt", sshd.ssh_config, tmp_path / "eval", tmp_path, "--json")
    argv.insert(argv.index("--hostfile"), "eval")
    argv.insert(argv.index("--hostfile"), str(run_dir))
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    events = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    in_training = {e["epoch"]: e for e in events if e["event"] == "eval"}[result["epoch"]]
    assert result["chosen"] == f"best evaluated: top-1 {in_training['top1']:.2%} after epoch {result['epoch']}"
    assert (result["correct"], result["total"], result["world_size"]) == (
        in_training["correct"], in_training["total"], 2)
    with open(tmp_path / "eval" / "per_class.csv", encoding="utf-8", newline="") as fh:
        assert sum(int(row["images"]) for row in csv.DictReader(fh)) == in_training["total"]


def test_two_hosts_two_devices_real_training(tmp_path, sshd):
    done, run_dir, seconds = train_over_ssh(tmp_path, sshd, "127.0.0.1 slots=2\n127.0.0.2 slots=2\n",
                                            "--set", "epoch_size=1", "--set", "eval_interval=0")
    print(f"2-host x 2-device real training: {seconds:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["plan"]["world_size"] == 4
    assert "replicas in sync" in done.stdout
    finishes = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    finishes = [e for e in finishes if e["event"] == "finish"]
    assert sorted(e["rank"] for e in finishes) == [0, 1, 2, 3]
    assert len({e["checksum"] for e in finishes}) == 1
    logs = sorted(p.name for p in (run_dir / "logs").glob("*-rank*.log"))
    assert logs == ["127.0.0.1-rank0.log", "127.0.0.1-rank1.log", "127.0.0.2-rank2.log",
                    "127.0.0.2-rank3.log"]
    assert wait_for(lambda: all_gone(record, run_dir), 5)


def test_two_hosts_restart_after_a_remote_worker_is_killed(tmp_path, sshd):
    """--max-restarts 1 --standby, rank 1 (second host) SIGKILLed after the first epoch's
    checkpoint: the run continues on both hosts from that checkpoint through the standby
    attempt (started on both hosts over SSH once training ran) and finishes its 3 epochs, in
    sync. (A cold restart over SSH: test_ssh_shrink.)"""
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("127.0.0.1 slots=1\n127.0.0.2 slots=1\n")
    run_dir = tmp_path / "run"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    t0 = time.monotonic()
    launcher = subprocess.Popen([sys.executable, "-m", "launcher.cli", "--hostfile", str(hosts),
                                 "--ssh-config", str(sshd.ssh_config), "--run-dir", str(run_dir),
                                 "--plain", "--max-restarts", "1", "--standby", "--grace", "2",
                                 "--set", "epoch_size=3", "--env", "ONEDNN_MAX_CPU_ISA=AVX2"],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    assert wait_for(lambda: has_checkpoint_event(run_dir), 300, 0.2), launcher.poll()
    record = json.loads((run_dir / "run.json").read_text())
    victim = next(p for p in record["processes"] if p["rank"] == 1)
    os.kill(victim["pid"], signal.SIGKILL)
    out, err = launcher.communicate(timeout=600)
    print(f"2-host run with a restart: {time.monotonic() - t0:.1f} s")
    assert launcher.returncode == 0, out[-3000:] + err[-3000:]
    # nothing printed a traceback, not even at interpreter exit ("Exception ignored in ...")
    assert "Traceback" not in out + err and "Exception ignored" not in out + err, err[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["attempt"] == 2
    assert record["attempts"][0]["restart_reason"] == "rank 1 on 127.0.0.2: killed by SIGKILL"
    assert [(s["attempt"], s["state"]) for s in record["standbys"]] == [(2, "used")]
    hosts = {p["host"] for p in record["processes"]}
    assert hosts == {"127.0.0.1", "127.0.0.2"}
    events = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    resumed = [e for e in events if e["event"] == "start" and e.get("resumed_from")]
    assert sorted(e["rank"] for e in resumed) == [0, 1]
    assert json.loads((run_dir / "eval.json").read_text())["top1"] > 0.2  # chance is 0.1
    finishes = [e for e in events if e["event"] == "finish"]
    assert len({e["checksum"] for e in finishes}) == 1
    assert wait_for(lambda: all_gone(record, run_dir), 5)
