"""The launcher -> agent heartbeat: a launcher that stops answering (SIGSTOP here; a hang or a
network partition look the same to an agent) gets its workers stopped by every agent within
``--heartbeat-timeout`` + ``--grace`` (+ one poll), locally and over SSH."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support.processes import pid_alive, run_processes, wait_for

HEARTBEAT, GRACE = 2.0, 1.0
BOUND = HEARTBEAT + GRACE + 1.5  # + the agent's poll, process exit and this test's polling


def _stop_launcher_and_time_the_workers(run) -> float:
    """SIGSTOP the launcher once every worker runs; seconds until none of the run's processes
    but the stopped launcher is left."""
    run.wait_step(1) if hasattr(run, "wait_step") else run.wait_event(lambda e: e["event"] == "step")
    workers = [p["pid"] for p in run.record["processes"] if p["pid"]]
    assert workers and all(pid_alive(p) for p in workers)
    os.kill(run.popen.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        gone = wait_for(lambda: not any(pid_alive(p) for p in workers)
                        and set(run_processes(run.dir)) <= {run.popen.pid}, BOUND + 10)
        seconds = time.monotonic() - t0
        assert gone, f"workers still running {seconds:.1f} s after the launcher stopped"
    finally:
        os.kill(run.popen.pid, signal.SIGCONT)
    return seconds


def _the_launcher_reports_it(run) -> None:
    code = run.wait(60)
    assert code != 0  # the attempt lost its agents while the launcher was stopped
    assert "Traceback" not in run.err + run.out
    assert run.record["status"] == "failed"


def test_a_stopped_launcher_gets_its_local_workers_stopped(runs):
    run = runs("--heartbeat-timeout", str(HEARTBEAT), "--grace", str(GRACE), "--plain",
               steps=100000, step_s=0.05)
    seconds = _stop_launcher_and_time_the_workers(run)
    assert seconds <= BOUND, seconds
    _the_launcher_reports_it(run)
    print(f"local workers stopped {seconds:.2f} s after the launcher (bound {BOUND:g} s)")


def test_a_stopped_launcher_gets_its_remote_workers_stopped(ssh_runs, sshd):
    hosts = "127.0.0.1 slots=1\n127.0.0.2 slots=1\n"
    run = ssh_runs(sshd, hosts, "--heartbeat-timeout", str(HEARTBEAT), "--grace", str(GRACE),
                   fake={"steps": 100000, "step_s": 0.05}, scheduler=False)
    seconds = _stop_launcher_and_time_the_workers(run)
    assert seconds <= BOUND, seconds
    _the_launcher_reports_it(run)
    print(f"remote workers stopped {seconds:.2f} s after the launcher (bound {BOUND:g} s)")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "x"])
def test_a_bad_heartbeat_timeout_is_a_usage_error(value, tmp_path):
    import subprocess
    import sys

    from tests.support.processes import fake_env
    out = subprocess.run([sys.executable, "-P", "-m", "launcher.cli", "--devices", "1", "--dry-run",
                          "--heartbeat-timeout", value], cwd=tmp_path, env=fake_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--heartbeat-timeout" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
