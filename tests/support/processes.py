"""Child processes in tests: their environment (fake or real MindSpore workers), msrun, free
ports, and finding or waiting for processes through ``/proc``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support import REPO

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _without_cluster_variables(*prefixes: str) -> dict[str, str]:
    """This process's environment less what a launcher, msrun or an enclosing Slurm job set
    (a test run inside an allocation would otherwise launch through Slurm) (and ``prefixes``)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("MS_", "RANK_", "WRN_", "SLURM_", *prefixes)) and k not in ("DEVICE_ID", "LOCAL_RANK")}


def fake_env(**fake: object) -> dict[str, str]:
    """The caller's environment without inherited cluster variables, plus ``FAKE_*`` settings."""
    env = _without_cluster_variables("FAKE_")
    env["PYTHONPATH"] = str(REPO)
    env.update({f"FAKE_{k.upper()}": str(v) for k, v in fake.items()})
    return env


def worker_env(**extra: str) -> dict[str, str]:
    """Environment for spawned MindSpore processes: this interpreter first on PATH (msrun
    starts a bare ``python``), quiet MindSpore logs, and no inherited cluster variables."""
    env = _without_cluster_variables()
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    env["GLOG_v"] = "3"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_msrun(script_and_args: list[str], log_dir: Path, workers: int = 2, timeout: float = 600,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``msrun --worker_num=N --local_worker_num=N --join=True`` on a script; returns the
    completed process (its logs are ``log_dir/worker_<k>.log``)."""
    cmd = [str(VENV_BIN / "msrun"), f"--worker_num={workers}", f"--local_worker_num={workers}",
           f"--master_port={free_port()}", f"--log_dir={log_dir}", "--join=True", *script_and_args]
    return subprocess.run(cmd, cwd=REPO, env=env or worker_env(), capture_output=True, text=True,
                          timeout=timeout)


def proc_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (``R``, ``S``, ``Z``...), None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie (dead, not yet reaped by its parent) counts as gone."""
    return proc_state(pid) not in (None, "Z", "X")


def group_alive(pgid: int) -> bool:
    """True if a live process is in process group ``pgid``."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid and pid_alive(int(entry)):
                    return True
            except OSError:
                continue
    return False


def run_processes(run_dir: str | os.PathLike) -> list[int]:
    """Live processes that belong to the run in ``run_dir``: every process the launcher starts
    (and everything they start) inherits ``WRN_RUN_DIR=<run_dir>`` in its environment."""
    marker = f"WRN_RUN_DIR={os.fspath(run_dir)}".encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ + b"\0" and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def wait_for(condition, timeout: float, interval: float = 0.05):
    """Poll ``condition()`` until it returns something truthy (returned) or ``timeout`` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def has_checkpoint_event(run_dir) -> bool:
    """Whether the run's metrics.jsonl already records a checkpoint (a ``wait_for`` condition)."""
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return False
    return any('"event":"checkpoint"' in line for line in lines)
