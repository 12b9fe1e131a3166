"""Multi-host launches over real OpenSSH (the ``sshd`` fixture): 127.0.0.1 and 127.0.0.2 are two
hosts. Fake workers here (seconds per test); the real MindSpore run is in test_ssh_e2e.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import wrn
from tests.support.launches import FAKE_SCHEDULER_CMD, FAKE_WORKER_CMD, SSHRun
from tests.support.processes import fake_env, free_port, run_processes, wait_for

A, B = "127.0.0.1", "127.0.0.2"


@pytest.fixture
def runs(ssh_runs):
    """Here ``runs`` starts multi-host launches (``SSHRun``, from ``tests/conftest.py``)."""
    return ssh_runs


TWO_HOSTS = f"# two hosts on one sshd\n{A} slots=1\n{B} slots=1   # the second\n"


def test_two_hosts_fake_run_logs_env_and_masking(runs, sshd):
    run = runs(sshd, TWO_HOSTS, "--env", "API_TOKEN=hunter2-secret", "--set", "epoch_size=2",
               fake={"steps": 3, "connect": 1})
    assert run.wait() == 0, run.out + run.err
    rec = run.record
    assert rec["status"] == "succeeded"
    assert rec["plan"]["hosts"] == [A, B]
    assert rec["plan"]["scheduler"]["host"] == A
    procs = {p["name"]: p for p in rec["processes"]}
    assert (procs["rank0"]["host"], procs["rank1"]["host"]) == (A, B)
    assert all(p["exit_code"] == 0 for p in procs.values())
    assert "rank 1 plain line 0 of step 2" in (run.dir / "logs" / f"{B}-rank1.log").read_text()
    assert (run.dir / "logs" / f"{A}-rank0.log").exists()
    assert (run.dir / "logs" / "scheduler.log").exists()
    assert {e["host"] for e in run.metrics()} == {A, B}
    # the secret reached the workers' environment but no file of the run directory
    assert rec["env"]["API_TOKEN"] == "***"
    assert rec["env"]["FAKE_STEPS"] == "3"
    assert all(p["env"]["API_TOKEN"] == "***" for p in rec["plan"]["processes"])
    for path in run.dir.rglob("*"):
        if path.is_file():
            assert b"hunter2" not in path.read_bytes(), path
    assert "hunter2" not in run.out + run.err
    assert "pre-flight" in run.err
    assert "ok" in run.err  # the results table
    assert run.err.count(f"{wrn.__version__} workdir") == 2  # both import this checkout (PYTHONPATH)
    assert "replicas in sync" in run.out
    assert (run.dir / ".wrn-run-marker").exists()
    assert wait_for(run.all_gone, 5)
    print(f"2-host fake run {run.seconds:.2f} s")


def _preflight_fails(run: SSHRun, *needles: str, within: float) -> str:
    code = run.wait()
    assert code == 2, run.out + run.err
    message = run.err.strip().splitlines()[-1]
    assert message.startswith("wrn-launch: error: pre-flight failed"), run.err
    for needle in needles:
        assert needle in message, message
    assert "Traceback" not in run.err
    assert run.seconds < within, run.seconds
    assert not run.dir.exists()  # nothing created
    assert not run_processes(run.dir)  # nothing started
    print(f"pre-flight failure reported in {run.seconds:.2f} s")
    return message


def test_closed_port_is_a_preflight_error(runs, sshd):
    closed = free_port()
    run = runs(sshd, f"{A} slots=1\n{B} slots=1 port={closed}\n")
    _preflight_fails(run, f"[{B}]", "cannot connect", f"port {closed}", within=15)


def test_wrong_port_not_ssh_is_a_preflight_error(runs, sshd):
    with socket.socket() as listener:  # accepts connections but never speaks SSH
        listener.bind((B, 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        run = runs(sshd, f"{A} slots=1\n{B} slots=1 port={port}\n")
        _preflight_fails(run, f"[{B}]", "not an SSH server", within=15)


def test_refused_key_is_a_preflight_error(runs, sshd):
    config = sshd.write_config("ssh_config_other_key", key=sshd.other_key)
    run = runs(sshd, TWO_HOSTS, config=config)
    message = _preflight_fails(run, f"[{A}]", f"[{B}]", "refused our key", "authorized_keys",
                               within=15)
    assert "failed on 2 of 2" in message


def test_unknown_host_key_is_refused_unless_accept_new(runs, sshd, tmp_path):
    known = sshd.known_hosts_for("known_only_a", (A,))
    config = sshd.write_config("ssh_config_only_a", known_hosts=known)
    run = runs(sshd, TWO_HOSTS, config=config)
    _preflight_fails(run, f"[{B}]", "not in", f"ssh-keyscan -p {sshd.port} {B} >> {known}",
                     "--ssh-accept-new", within=15)
    assert B not in known.read_text()


def test_accept_new_trusts_and_remembers(runs, sshd, tmp_path):
    known = sshd.known_hosts_for("known_accept", (A,))
    config = sshd.write_config("ssh_config_accept", known_hosts=known)
    run = runs(sshd, TWO_HOSTS, "--ssh-accept-new", config=config, fake={"steps": 2, "connect": 1})
    assert run.wait() == 0, run.out + run.err
    assert B in known.read_text()


def test_version_mismatch_is_a_preflight_error(runs, sshd, tmp_path):
    fake_python = tmp_path / "old-python"
    fake_python.write_text("#!/bin/sh\ncat >/dev/null\n"
                           "echo '@wrn-preflight {\"python\": \"3.11.0\", \"mindspore\": \"2.9.0\", "
                           "\"import\": null, \"data\": null, \"devices\": null, \"cpus\": [0], "
                           "\"port_free\": true}'\n")
    fake_python.chmod(0o755)
    run = runs(sshd, f"{A} slots=1\n{B} slots=1 python={fake_python}\n")
    _preflight_fails(run, f"[{B}]", "mindspore 2.9.0", "python 3.11.0", "python=", within=15)


def test_sigkilled_remote_worker_stops_every_host(runs, sshd):
    run = runs(sshd, TWO_HOSTS, fake={"steps": 100000, "step_s": 0.05, "connect": 1})
    run.wait_step(1)
    victim = next(p for p in run.record["processes"] if p["rank"] == 1)
    t0 = time.monotonic()
    os.kill(victim["pid"], signal.SIGKILL)
    code = run.wait()
    took = time.monotonic() - t0
    print(f"launcher exited {took:.2f} s after SIGKILL of rank 1 on {B}")
    assert code == 1, (took, run.out + run.err)
    assert took < 5, (took, run.out + run.err)
    cause = run.record["root_cause"]
    assert (cause["host"], cause["rank"], cause["signal"]) == (B, 1, "SIGKILL")
    assert f"rank 1 on {B} killed by SIGKILL" in run.out
    assert wait_for(run.all_gone, 5)


def test_sigkilled_launcher_leaves_nothing_on_any_host(runs, sshd):
    run = runs(sshd, TWO_HOSTS, fake={"steps": 100000, "step_s": 0.05, "connect": 1,
                                      "ignore_term": 1, "grandchild": 1})
    run.wait_step(0)
    run.wait_step(1)
    assert wait_for(lambda: all(a["pid"] for a in run.record["agents"]), 5)
    t0 = time.monotonic()
    os.kill(run.popen.pid, signal.SIGKILL)
    run.popen.wait()
    assert wait_for(run.all_gone, 10, 0.1), run.record
    print(f"every process gone {time.monotonic() - t0:.2f} s after SIGKILL of the launcher")


def test_cut_ssh_connection_ends_the_run_everywhere(runs, sshd):
    run = runs(sshd, TWO_HOSTS, fake={"steps": 100000, "step_s": 0.05, "connect": 1,
                                      "grandchild": 1})
    run.wait_step(1)
    assert wait_for(lambda: all(a["pid"] for a in run.record["agents"]), 5)
    agent = next(a["pid"] for a in run.record["agents"] if a["host"] == B)
    session = int(Path(f"/proc/{agent}/stat").read_text().rsplit(")", 1)[1].split()[1])  # ppid
    assert "sshd" in Path(f"/proc/{session}/cmdline").read_text()
    t0 = time.monotonic()
    os.kill(session, signal.SIGKILL)  # the sshd session process of host B's connection
    code = run.wait(30)
    assert wait_for(run.all_gone, 10, 0.1)
    print(f"run ended (exit {code}) and every process gone {time.monotonic() - t0:.2f} s after "
          f"the connection to {B} was cut")
    assert code == 1
    assert run.record["root_cause"]["host"] == B


def test_rank0_outputs_are_copied_back_when_the_run_dir_is_not_shared(runs, sshd, tmp_path):
    remote = tmp_path / "elsewhere" / "run"  # the run directory's path "on the hosts"
    run = runs(sshd, TWO_HOSTS, "--remote-run-dir", str(remote),
               fake={"steps": 2, "epochs": 2, "connect": 1})
    assert run.wait() == 0, run.out + run.err
    assert (remote / "config.yaml").exists()
    assert (remote / ".wrn-run-marker").exists()  # copied
    for name in ("checkpoints/fake-e1.ckpt", "checkpoints/fake-e2.ckpt", "eval.json"):
        assert (remote / name).exists(), name  # rank 0 wrote there ...
        assert (run.dir / name).read_bytes() == (remote / name).read_bytes(), name  # ... and back
    assert not list((run.dir / "checkpoints").glob("*.part"))
    assert run.record["summary"]["top1"] == 0.95
    assert wait_for(run.all_gone, 5)
    print(f"2-host fake run with rank 0's outputs copied back {run.seconds:.2f} s")


def _ascend_fixture(tmp_path: Path) -> tuple[Path, Path]:
    """A fake /dev with davinci0-3 and an hccn.conf for devices 0-3 (host A runs 0-1, B 2-3)."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("davinci0", "davinci1", "davinci2", "davinci3", "davinci_manager"):
        (dev / name).write_text("")
    conf = tmp_path / "hccn.conf"
    conf.write_text("".join(f"address_{i}=192.168.100.{10 + i}\nnetmask_{i}=255.255.255.0\n"
                            for i in range(4)))
    return dev, conf


ASCEND_HOSTS = f"{A} slots=2 devices=0-1\n{B} slots=2 devices=2-3\n"


def _check_merged_table(table: dict) -> None:
    assert table["server_count"] == "2"
    servers = table["server_list"]
    assert [s["server_id"] for s in servers] == [A, B]
    assert [[(d["device_id"], d["rank_id"]) for d in s["device"]] for s in servers] == \
        [[("0", "0"), ("1", "1")], [("2", "2"), ("3", "3")]]  # contiguous per server
    assert servers[1]["device"][1]["device_ip"] == "192.168.100.13"


def test_ascend_dry_run_over_ssh_shows_the_merged_rank_table(runs, sshd, tmp_path):
    dev, conf = _ascend_fixture(tmp_path)
    run = runs(sshd, ASCEND_HOSTS, "--backend", "ascend", "--hccl-rank-table", "--dry-run",
               "--dev-dir", str(dev), "--hccn-conf", str(conf))
    assert run.wait() == 0, run.out + run.err
    assert "pre-flight" in run.err
    assert "FAILED" not in run.err
    text = run.out
    start = text.index("{", text.index("rank table ("))
    table = json.loads(text[start:text.index("\n}", start) + 2])
    _check_merged_table(table)
    assert "merged from each host's" in text
    assert not run.dir.exists()  # a dry run creates nothing


def test_ascend_dry_run_over_ssh_is_a_dynamic_cluster_by_default(runs, sshd, tmp_path):
    dev, _conf = _ascend_fixture(tmp_path)
    run = runs(sshd, ASCEND_HOSTS, "--backend", "ascend", "--dry-run", "--dev-dir", str(dev),
               "--hccn-conf", str(tmp_path / "missing.conf"))  # not needed without a table
    assert run.wait() == 0, run.out + run.err
    text = run.out
    assert "startup: dynamic cluster (scheduler + MS_WORKER per device)\n" in text
    assert f"  MS_SCHED_HOST={A}\n" in text and "  MS_WORKER_NUM=4\n" in text
    assert f"scheduler address: {A}:" in text and "MS_ROLE=MS_SCHED" in text
    assert "rank table (" not in text and "missing.conf" not in text + run.err
    assert "core binding: off: the NUMA topology of other hosts is not read" in text


def test_ascend_dry_run_names_a_missing_hccn_conf(runs, sshd, tmp_path):
    dev, _conf = _ascend_fixture(tmp_path)
    run = runs(sshd, ASCEND_HOSTS, "--backend", "ascend", "--hccl-rank-table", "--dry-run",
               "--dev-dir", str(dev), "--hccn-conf", str(tmp_path / "missing.conf"))
    assert run.wait() == 0, run.out + run.err
    assert f"{A}:{tmp_path / 'missing.conf'} does not exist" in run.out + run.err


def test_ascend_launch_places_the_merged_table_on_every_host(runs, sshd, tmp_path):
    dev, conf = _ascend_fixture(tmp_path)
    remote = tmp_path / "elsewhere" / "run"
    run = runs(sshd, ASCEND_HOSTS, "--backend", "ascend", "--hccl-rank-table", "--dev-dir",
               str(dev), "--hccn-conf", str(conf), "--remote-run-dir", str(remote),
               fake={"steps": 2}, scheduler=False)
    assert run.wait() == 0, run.out + run.err
    here = json.loads((run.dir / "rank_table.json").read_text())
    _check_merged_table(here)
    assert (remote / "rank_table.json").read_text() == (run.dir / "rank_table.json").read_text()
    procs = {p["name"]: p for p in run.record["plan"]["processes"]}
    assert procs["rank3"]["env"]["RANK_TABLE_FILE"] == str(remote / "rank_table.json")
    assert (procs["rank3"]["env"]["RANK_ID"], procs["rank3"]["env"]["DEVICE_ID"]) == ("3", "3")
    assert wait_for(run.all_gone, 5)


@pytest.mark.slow  # among the longest of the fast tier: keeps `make test-fast` under 3 minutes
def test_restart_after_a_remote_worker_is_killed_continues_from_the_checkpoint(runs, sshd):
    run = runs(sshd, TWO_HOSTS, "--max-restarts", "1",
               fake={"steps": 3, "epochs": 3, "step_s": 0.2, "connect": 1, "rank": 1, "kill_at": 5})
    assert run.wait(60) == 0, run.out + run.err
    rec = run.record
    assert rec["status"] == "succeeded"
    assert rec["attempt"] == 2
    assert [a["outcome"] for a in rec["attempts"]] == ["restarted"]
    assert rec["attempts"][0]["restart_reason"] == f"rank 1 on {B}: killed by SIGKILL"
    assert rec["attempts"][0]["root_cause"]["host"] == B
    events = run.metrics()
    restart = next(i for i, e in enumerate(events) if e["event"] == "start" and e.get("resumed_from"))
    newest = [e["path"] for e in events[:restart] if e["event"] == "checkpoint"][-1]
    resumed = [e for e in events[restart:] if e["event"] == "start"]
    assert sorted(e["rank"] for e in resumed) == [0, 1]
    assert {e["resumed_from"] for e in resumed} == {newest}  # the newest before the restart
    assert (run.dir / "logs" / "attempt-1" / f"{B}-rank1.log").exists()
    assert f"restart 1 of 1 from the newest valid checkpoint: rank 1 on {B}" in run.out
    assert wait_for(run.all_gone, 5)


@pytest.mark.slow  # among the longest of the fast tier: keeps `make test-fast` under 3 minutes
def test_resume_of_an_interrupted_two_host_run_runs_on_its_hosts(runs, sshd, tmp_path):
    fake = {"steps": 3, "epochs": 3, "step_s": 0.2, "connect": 1}
    first = runs(sshd, TWO_HOSTS, fake=fake)
    first.wait_event(lambda m: m["event"] == "checkpoint", 30)
    first.popen.send_signal(signal.SIGINT)
    assert first.wait() == 130
    assert first.record["status"] == "interrupted"
    assert wait_for(first.all_gone, 5)
    fake_args = [a for k, v in fake.items() for a in ("--env", f"FAKE_{k.upper()}={v}")]
    argv = [sys.executable, "-m", "launcher.cli", "--resume", str(first.dir), "--ssh-config",
            str(sshd.ssh_config), "--grace", "1", "--plain", "--ssh-timeout", "3",
            "--worker-cmd", FAKE_WORKER_CMD, "--scheduler-cmd", FAKE_SCHEDULER_CMD, *fake_args]
    done = subprocess.run(argv, cwd=tmp_path, env=fake_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    rec = json.loads((first.dir / "run.json").read_text())
    assert rec["status"] == "succeeded"
    assert rec["plan"]["hosts"] == [A, B]
    assert [a["outcome"] for a in rec["attempts"]] == ["ended"]
    resumed = [e for e in first.metrics() if e["event"] == "start" and e.get("resumed_from")]
    assert sorted(e["rank"] for e in resumed) == [0, 1]
    assert {e["host"] for e in first.metrics() if e["event"] == "finish"} == {A, B}
    assert wait_for(first.all_gone, 5)
