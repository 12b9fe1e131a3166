"""``wrn-launch`` running the fake worker (``tests/support/fake_worker.py``): its command lines,
and ``Run`` / ``SSHRun``, one launcher subprocess each, for the tests that watch a launch from
the outside (the ``runs`` and ``ssh_runs`` fixtures in ``tests/conftest.py`` start them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.processes import fake_env, group_alive, pid_alive, run_processes, wait_for

FAKE_WORKER = Path(__file__).resolve().parent / "fake_worker.py"
FAKE_WORKER_CMD = f"{sys.executable} {FAKE_WORKER}"
FAKE_SCHEDULER_CMD = f"{FAKE_WORKER_CMD} --scheduler"


#: ``wrn-launch`` as a module; -P as for the console script (the launch directory is not on the
#: module path).
LAUNCHER = [sys.executable, "-P", "-m", "launcher.cli"]


def fake_args(*args: str, scheduler: bool | str = False) -> list[str]:
    """Launch flags ``args`` plus those running the fake worker, with the fake scheduler
    (True), none (False), or the scheduler command given."""
    sched = scheduler if isinstance(scheduler, str) else FAKE_SCHEDULER_CMD if scheduler else "none"
    return [*args, "--worker-cmd", FAKE_WORKER_CMD, "--scheduler-cmd", sched]


def launcher_argv(*args: str, scheduler: bool | str = False) -> list[str]:
    """``wrn-launch`` (as ``python -m launcher.cli``) running the fake worker (``fake_args``)."""
    return [*LAUNCHER, *fake_args(*args, scheduler=scheduler)]


class Run:
    """One ``wrn-launch`` subprocess running fake workers in ``<tmp>/<name>``."""

    def __init__(self, tmp_path: Path, *args: str, devices: int = 2, scheduler: bool = False,
                 name: str = "run", **fake):
        self.dir = tmp_path / name
        argv = launcher_argv("--devices", str(devices), "--run-dir", str(self.dir), "--grace", "1",
                             *args, scheduler=scheduler)
        self.t0 = time.monotonic()
        self.popen = subprocess.Popen(argv, cwd=tmp_path, env=fake_env(**fake), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.out = self.err = ""

    def wait(self, timeout: float = 30) -> int:
        self.out, self.err = self.popen.communicate(timeout=timeout)
        self.seconds = time.monotonic() - self.t0
        return self.popen.returncode

    @property
    def record(self) -> dict:
        return json.loads((self.dir / "run.json").read_text())

    def procs(self) -> dict[str, dict]:
        return {p["name"]: p for p in self.record["processes"]}

    def wait_started(self, timeout: float = 20) -> dict[str, dict]:
        """run.json once every process has a pid (it is rewritten as each one starts)."""
        def ready():
            try:
                procs = self.procs()
            except (OSError, ValueError):
                return None
            return procs if all(p["pid"] for p in procs.values()) else None
        procs = wait_for(ready, timeout)
        assert procs, "processes did not start"
        return procs

    def metrics(self) -> list[dict]:
        path = self.dir / "metrics.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def wait_event(self, pred, timeout: float = 20) -> dict:
        found = wait_for(lambda: next((m for m in self.metrics() if pred(m)), None), timeout)
        assert found, "event did not come"
        return found

    def kill_everything(self) -> None:
        """SIGKILL the launcher if it still runs, and every process of the run it left."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        for pid in run_processes(self.dir):
            os.kill(pid, signal.SIGKILL)


def hostfile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hosts.txt"
    path.write_text(text)
    return path


class SSHRun(Run):
    """``wrn-launch --hostfile`` as a subprocess, fake workers on both loopback hosts (the
    fake settings travel to the remote workers as ``--env``)."""

    def __init__(self, tmp_path: Path, server, hosts: str, *args: str, config: Path | None = None,
                 fake: dict | None = None, scheduler: bool = True):
        self.dir = tmp_path / "run"
        fake_args = [a for k, v in (fake or {}).items() for a in ("--env", f"FAKE_{k.upper()}={v}")]
        argv = [*LAUNCHER, "--hostfile", str(hostfile(tmp_path, hosts)),
                "--ssh-config", str(config or server.ssh_config), "--run-dir", str(self.dir),
                "--grace", "1", "--plain", "--ssh-timeout", "3", "--worker-cmd", FAKE_WORKER_CMD,
                "--scheduler-cmd", FAKE_SCHEDULER_CMD if scheduler else "none", *fake_args, *args]
        self.t0 = time.monotonic()
        self.popen = subprocess.Popen(argv, cwd=tmp_path, env=fake_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.out = self.err = ""

    def wait(self, timeout: float = 60) -> int:
        return super().wait(timeout)

    def wait_step(self, rank: int) -> None:
        assert wait_for(lambda: any(e["event"] == "step" and e["rank"] == rank for e in self.metrics()),
                        30), self.popen.poll()

    def recorded_pids(self) -> list[int]:
        rec = self.record
        return [p["pid"] for p in rec["processes"] if p["pid"]] + \
            [a["pid"] for a in rec.get("agents", []) if a["pid"]]

    def all_gone(self) -> bool:
        rec = self.record
        groups = [p["pgid"] for p in rec["processes"] if p["pgid"]]
        return not any(pid_alive(p) for p in self.recorded_pids()) and not run_processes(self.dir) \
            and not any(group_alive(g) for g in groups)


def launches(tmp_path: Path, kind: type[Run]):
    """The body of a fixture that starts ``kind`` runs in ``tmp_path`` and, whatever the test's
    outcome, leaves nothing of them behind."""
    made: list[Run] = []

    def make(*args, **kw):
        made.append(kind(tmp_path, *args, **kw))
        return made[-1]
    yield make
    for run in made:  # never leave anything behind, even when a test fails
        run.kill_everything()
