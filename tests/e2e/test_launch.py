"""The launcher end to end with fake workers (``tests/support/fake_worker.py``): real processes,
real signals, real run directories; seconds per test. Tests with the real MindSpore worker are
in ``test_launch_e2e.py``."""

from __future__ import annotations

import io
import os
import signal
import time

import pytest
import yaml

from launcher.api import LaunchResult, launch
from launcher.ui.renderers import PlainRenderer
from tests.support.launches import FAKE_WORKER_CMD, Run
from tests.support.processes import fake_env, pid_alive, run_processes, wait_for
from wrn.hostname import host_name

HOST = host_name()


def assert_all_gone(run: Run, timeout: float = 5.0) -> None:
    pids = [p["pid"] for p in run.record["processes"] if p["pid"]]
    assert pids
    assert wait_for(lambda: not any(pid_alive(p) for p in pids) and not run_processes(run.dir), timeout), \
        f"left behind: {[p for p in pids if pid_alive(p)]} {run_processes(run.dir)}"


def test_success_run_directory(runs):
    run = runs("--epoch_size=3", "--set", "lr=0.05", scheduler=True, connect=1, steps=4, epochs=2,
               plain=2, grandchild=1)
    assert run.wait() == 0, run.out + run.err
    rec = run.record
    assert rec["status"] == "succeeded"
    assert rec["exit_code"] == 0
    assert rec["end_time"]
    assert rec["versions"]["python"]
    assert rec["versions"]["mindspore"] == "2.10.0"
    assert rec["command"][0] == "wrn-launch"
    assert rec["plan"]["world_size"] == 2
    procs = run.procs()
    assert set(procs) == {"scheduler", "rank0", "rank1"}
    for p in procs.values():
        assert p["pid"]
        assert p["pgid"] == p["pid"]
        assert p["exit_code"] == 0
        assert p["host"] == HOST
    assert procs["rank1"]["rank"] == 1
    assert procs["scheduler"]["rank"] is None
    # logs: plain lines only; metrics: every event with its host
    log = (run.dir / "logs" / f"{HOST}-rank1.log").read_text()
    assert "rank 1 plain line 1 of step 8" in log
    assert "@wrn" not in log
    assert "fake scheduler listening" in (run.dir / "logs" / "scheduler.log").read_text()
    events = run.metrics()
    kinds = {(e["event"], e["rank"]) for e in events}
    assert kinds >= {("start", 0), ("start", 1), ("finish", 0), ("finish", 1)}
    assert all(e["host"] == HOST for e in events)
    assert sum(e["event"] == "step" for e in events) == 16
    cfg = yaml.safe_load((run.dir / "config.yaml").read_text())
    assert (cfg["device_target"], cfg["epoch_size"], cfg["lr"]) == ("CPU", 3, 0.05)
    assert not (run.dir / "rank_table.json").exists()
    # the output is for a pipe: timestamped lines, a summary, no escape sequences
    assert "\x1b" not in run.out
    assert "replicas in sync" in run.out
    assert "succeeded" in run.out
    assert "accuracy (top-1)  95.00%" in run.out
    assert "fake-e2.ckpt" in run.out
    assert_all_gone(run, 1.0)  # the fake workers' grandchildren included


def test_worker_exit_code_fails_fast_and_blames_it(runs):
    run = runs(rank=1, exit_at=3, exit_code=3, steps=1000, step_s=0.05)
    assert run.wait() == 1
    assert run.seconds < 10
    cause = run.record["root_cause"]
    assert (cause["rank"], cause["exit_code"], cause["host"]) == (1, 3, HOST)
    assert cause["error"] == "RuntimeError: fake failure"
    assert "rank 1: failing on purpose at step 3" in cause["log_tail"]
    assert f"root cause: rank 1 on {HOST} exited with code 3" in run.out
    assert f"logs/{HOST}-rank1.log" in run.out
    assert "rank 1 plain line 0 of step 2" in run.out
    procs = run.procs()
    assert procs["rank0"]["signal"] == "SIGTERM"  # stopped, not blamed
    assert run.record["status"] == "failed"
    assert_all_gone(run)


def test_sigkilled_worker_ends_the_run_within_5s(runs):
    run = runs(steps=10000, step_s=0.05)
    run.wait_event(lambda e: e["event"] == "step" and e["rank"] == 1)
    victim = wait_for(lambda: run.procs()["rank1"]["pid"], 5)  # run.json: within its interval
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    code = run.wait()
    took = time.monotonic() - t0
    assert code == 1, took
    assert took < 5, took
    assert run.record["root_cause"]["signal"] == "SIGKILL"
    assert f"rank 1 on {HOST} killed by SIGKILL" in run.out
    assert_all_gone(run)


def test_stubborn_worker_is_killed_after_grace(runs):
    run = runs(rank=0, exit_at=3, steps=1000, ignore_term=1)  # rank 1 ignores SIGTERM too
    assert run.wait() == 1
    assert run.seconds < 10
    assert run.procs()["rank1"]["signal"] == "SIGKILL"
    assert_all_gone(run)


def test_sigkilled_launcher_leaves_nothing(runs):
    run = runs(scheduler=True, connect=1, steps=10000, ignore_term=1)
    run.wait_event(lambda e: e["event"] == "step" and e["rank"] == 1)
    run.wait_started()
    t0 = time.monotonic()
    os.kill(run.popen.pid, signal.SIGKILL)
    run.popen.wait()
    assert_all_gone(run, timeout=10)
    print(f"all processes gone {time.monotonic() - t0:.2f} s after SIGKILL of the launcher")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupted_launcher_stops_cleanly(runs, sig, code):
    run = runs(scheduler=True, connect=1, steps=10000)
    run.wait_event(lambda e: e["event"] == "step")
    run.popen.send_signal(sig)
    assert run.wait() == code
    rec = run.record
    assert rec["status"] == "interrupted"
    assert rec["exit_code"] == code
    assert rec["root_cause"] is None
    assert all(p["exit_code"] is not None for p in rec["processes"])
    assert "interrupted" in run.out
    assert_all_gone(run)


def test_two_concurrent_runs_get_distinct_ports(runs):
    # The fake scheduler binds MS_SCHED_PORT and the workers register with it, so a shared port
    # would fail one of the runs.
    a = runs(name="a", scheduler=True, connect=1, steps=20)
    b = runs(name="b", scheduler=True, connect=1, steps=20)
    assert (a.wait(), b.wait()) == (0, 0), a.out + b.out
    ports = {r.record["plan"]["scheduler"]["port"] for r in (a, b)}
    assert len(ports) == 2


def test_stalled_worker_is_warned_then_failed(runs):
    run = runs("--stall-timeout", "0.5", "--stall-kill", "1.5", rank=1, hang_at=3, steps=1000)
    assert run.wait() == 1
    assert "rank 1 on" in run.out
    assert "looks stalled" in run.out
    cause = run.record["root_cause"]
    assert cause["rank"] == 1
    assert cause["reason"].startswith("stalled: no event for")
    assert "rank 1: hanging at step 3" in cause["log_tail"]
    assert_all_gone(run)


def test_startup_has_its_own_allowance(runs):
    ok = runs("--stall-timeout", "0.3", "--stall-kill", "0.6", "--startup-timeout", "3",
              name="slow-start", startup_s=1.0, steps=3)
    assert ok.wait() == 0, ok.out
    stuck = runs("--stall-timeout", "10", "--startup-timeout", "0.5", name="stuck", startup_s=60)
    assert stuck.wait() == 1
    assert "since it started" in stuck.record["root_cause"]["reason"]
    assert stuck.seconds < 10


def test_scheduler_dying_first_is_blamed(runs):
    run = runs(scheduler=f"{FAKE_WORKER_CMD} --no-such-flag", steps=1000)
    assert run.wait() == 1
    cause = run.record["root_cause"]
    assert cause["name"] == "scheduler"
    assert cause["exit_code"] == 2
    assert "while workers were running" in cause["reason"]
    assert "root cause: scheduler on" in run.out


def test_diverged_replicas_are_loud(runs):
    run = runs(rank=1, diverge=1, steps=2)
    assert run.wait() == 0
    assert "replicas DIVERGED" in run.out
    assert run.record["summary"]["replicas_in_sync"] is False


def test_python_api(tmp_path, monkeypatch):
    for key, value in fake_env(steps=3).items():
        monkeypatch.setenv(key, value)
    out = io.StringIO()
    result = launch(devices="0-1", run_dir=str(tmp_path / "api"), worker_cmd=FAKE_WORKER_CMD.split(),
                    start_scheduler=False, grace=1, renderer=PlainRenderer(out))
    assert isinstance(result, LaunchResult)
    assert result.ok
    assert result.status == "succeeded"
    assert result.run_dir == str(tmp_path / "api")
    assert result.summary.replicas_in_sync
    assert [r.device_id for r in result.plan.ranks] == [0, 1]
    assert "\x1b" not in out.getvalue()


def test_pids_are_in_run_json_while_running(runs):
    run = runs(scheduler=True, connect=1, steps=10000)
    procs = run.wait_started()
    assert run.record["status"] == "running"
    assert all(pid_alive(p["pid"]) and p["exit_code"] is None for p in procs.values())
    run.popen.send_signal(signal.SIGTERM)
    assert run.wait() == 143


def test_a_crash_after_finishing_does_not_fail_the_run(runs):
    run = runs(steps=3, rank=1, crash_after_finish=1)
    assert run.wait() == 0, run.out + run.err
    assert run.record["status"] == "succeeded"
    rank1 = run.procs()["rank1"]
    assert rank1["signal"] == "SIGSEGV"
    assert "after it had reported finishing" in rank1["error"]
    assert "rank 1 on" in run.out
    assert "counted as succeeded" in run.out


def test_a_crash_before_finishing_still_fails_the_run(runs):
    run = runs(steps=3, rank=1, kill_at=2)
    assert run.wait() == 1
    assert run.record["status"] == "failed"
