"""Helpers for tests that start real MindSpore processes (msrun, the worker, the CLI)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_env(**extra: str) -> dict[str, str]:
    """Environment for spawned MindSpore processes: this interpreter first on PATH (msrun
    starts a bare ``python``), quiet MindSpore logs, and no inherited cluster variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MS_", "RANK_", "WRN_")) and k not in ("DEVICE_ID", "LOCAL_RANK")}
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
