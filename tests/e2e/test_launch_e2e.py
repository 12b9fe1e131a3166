"""wrn-launch with the real worker (``python -m wrn.train``) and scheduler on CPU: failures of
real MindSpore processes, and two real runs at once. Minutes, not seconds. (The default config
trained on 2 devices to its usual accuracy is checked once, from the installed wheel, in
test_wheel.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import fake_env, pid_alive, run_processes, wait_for

pytestmark = pytest.mark.slow


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    run_dir = tmp_path / "run"
    popen = subprocess.Popen([sys.executable, "-m", "launcher.cli", "--devices", "2", "--run-dir",
                              str(run_dir), *args], cwd=tmp_path, env=fake_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    return popen, run_dir


def succeeded(popen: subprocess.Popen, run_dir: Path, timeout: float) -> tuple[str, dict]:
    """Wait for the launch of ``start`` to end, require exit status 0; its stdout and run.json."""
    out, err = popen.communicate(timeout=timeout)
    assert popen.returncode == 0, out + err
    return out, json.loads((run_dir / "run.json").read_text())


def events(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def all_gone(run_dir: Path) -> bool:
    pids = [p["pid"] for p in json.loads((run_dir / "run.json").read_text())["processes"] if p["pid"]]
    return not any(pid_alive(p) for p in pids) and not run_processes(run_dir)


@pytest.fixture
def cleanup():
    made = []
    yield made.append
    for popen, run_dir in made:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
        for pid in run_processes(run_dir):
            os.kill(pid, signal.SIGKILL)


def test_sigkill_real_worker_mid_training(tmp_path, cleanup):
    popen, run_dir = start(tmp_path)
    cleanup((popen, run_dir))
    assert wait_for(lambda: any(e["event"] == "step" for e in events(run_dir)), 300, 0.2)
    victim = next(p for p in json.loads((run_dir / "run.json").read_text())["processes"] if p["rank"] == 1)
    t0 = time.monotonic()
    os.kill(victim["pid"], signal.SIGKILL)
    out, err = popen.communicate(timeout=60)
    took = time.monotonic() - t0
    print(f"launcher exited {took:.2f} s after SIGKILL of rank 1")
    assert popen.returncode == 1
    assert took < 10
    cause = json.loads((run_dir / "run.json").read_text())["root_cause"]
    assert (cause["rank"], cause["signal"]) == (1, "SIGKILL")
    assert "root cause: rank 1" in out
    assert wait_for(lambda: all_gone(run_dir), 5)


def test_sigkill_launcher_with_real_workers(tmp_path, cleanup):
    popen, run_dir = start(tmp_path)
    cleanup((popen, run_dir))
    assert wait_for(lambda: any(e["event"] == "start" for e in events(run_dir)), 300, 0.2)
    t0 = time.monotonic()
    os.kill(popen.pid, signal.SIGKILL)
    popen.wait()
    assert wait_for(lambda: all_gone(run_dir), 10, 0.1)
    print(f"every process of the run gone {time.monotonic() - t0:.2f} s after SIGKILL of the launcher")


def test_two_real_runs_at_once(tmp_path, cleanup):
    # Each run reserves its own scheduler port; the MindSpore clusters must not meet.
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        popen, run_dir = start(tmp_path / name, "--set", "epoch_size=1", "--set", "image_size=16")
        cleanup((popen, run_dir))
        runs.append((popen, run_dir))
    for popen, _ in runs:
        out, err = popen.communicate(timeout=600)
        assert popen.returncode == 0, out[-3000:] + err[-3000:]
    ports = {json.loads((d / "run.json").read_text())["plan"]["scheduler"]["port"] for _, d in runs}
    assert len(ports) == 2


def test_sigterm_launcher_with_real_workers(tmp_path, cleanup):
    popen, run_dir = start(tmp_path)
    cleanup((popen, run_dir))
    assert wait_for(lambda: any(e["event"] == "step" for e in events(run_dir)), 300, 0.2)
    t0 = time.monotonic()
    popen.send_signal(signal.SIGTERM)
    out, _ = popen.communicate(timeout=60)
    print(f"launcher exited {time.monotonic() - t0:.2f} s after SIGTERM")
    assert popen.returncode == 143
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert all(p["exit_code"] is not None for p in record["processes"])
    assert all_gone(run_dir)
