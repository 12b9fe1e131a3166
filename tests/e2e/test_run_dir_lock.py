"""One launcher per run directory: a lock held for the launcher's lifetime.

A second launcher cannot use a run directory another one holds (not even an empty one given
to both), a run whose launcher was SIGKILLed shows as lost and is resumed without editing
run.json, and a live run cannot be resumed twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from launcher.rundir.layout import RunDirLock
from launcher.rundir.reading import load_run
from tests.support.launches import launcher_argv
from tests.support.processes import fake_env, run_processes, wait_for


def test_a_run_dir_held_by_another_launcher_is_refused(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    lock = RunDirLock(target).acquire()  # another launcher, between its check and its use
    try:
        done = subprocess.run(launcher_argv("--devices", "1", "--run-dir", str(target)),
                              cwd=tmp_path, env=fake_env(steps=1), capture_output=True, text=True,
                              timeout=60)
    finally:
        lock.release()
    assert done.returncode == 2
    assert "is in use by another wrn-launch" in done.stderr
    assert f"pid {os.getpid()}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (target / "run.json").exists()


def test_a_killed_launcher_leaves_a_run_that_resumes_without_hand_editing(runs, tmp_path):
    fake = {"steps": 3, "epochs": 3, "step_s": 0.2}
    run = runs(**fake)
    run.wait_event(lambda m: m["event"] == "checkpoint", 30)
    os.kill(run.popen.pid, signal.SIGKILL)
    run.popen.wait()
    assert wait_for(lambda: not run_processes(run.dir), 10)
    assert run.record["status"] == "running"  # the launcher had no chance to say otherwise
    assert load_run(run.dir).status == "lost"
    resumed = subprocess.run(launcher_argv("--resume", str(run.dir), "--grace", "1"), cwd=tmp_path,
                             env=fake_env(**fake), capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    record = json.loads((run.dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert [a["status"] for a in record["attempts"]] == ["lost"]
    assert load_run(run.dir).status == "succeeded"


def test_a_live_run_cannot_be_resumed_a_second_time(runs, tmp_path):
    run = runs(steps=100000)
    run.wait_started()
    done = subprocess.run(launcher_argv("--resume", str(run.dir)), cwd=tmp_path, env=fake_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "is in use by another wrn-launch" in done.stderr
    assert load_run(run.dir).status == "running"
    run.popen.send_signal(signal.SIGTERM)
    assert run.wait() == 143
