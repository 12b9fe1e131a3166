"""The local backend: node agents as child processes of the launcher, on this host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping

from launcher.backends.base import Backend, module_argv, python_path
from launcher.backends.ports import port_is_free
from wrn.contract import AGENT_PARENT_ENV
from wrn.fileio import write_atomic


class LocalBackend(Backend):
    """The agent is a child process of the launcher, run with the launcher's own interpreter.

    ``sys.executable`` is used rather than whatever ``python`` is first on PATH, so the agent and
    the workers run in the environment the launcher was started from.
    """

    local = True

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    def agent_cmd(self, host: str) -> list[str]:
        return module_argv(self.python, "launcher.agent")

    def agent_env(self, host: str) -> dict[str, str]:
        """The agent's environment: the launcher's, with the project importable."""
        env = dict(os.environ)
        env["PYTHONPATH"] = python_path(env.get("PYTHONPATH"))
        if not env["PYTHONPATH"]:
            del env["PYTHONPATH"]
        env["PYTHONUNBUFFERED"] = "1"
        env[AGENT_PARENT_ENV] = str(os.getpid())  # the agent checks its launcher is alive
        return env

    def spawn_agent(self, host: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.agent_cmd(host), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=self.agent_env(host), close_fds=True,
            process_group=0)  # its own group: a terminal's Ctrl-C reaches only the launcher

    def put(self, host: str, remote_dir: str, files: Mapping[str, str]) -> None:
        os.makedirs(remote_dir, exist_ok=True)
        for name, local in files.items():
            target = os.path.join(remote_dir, name)
            if os.path.abspath(local) != os.path.abspath(target):
                shutil.copyfile(local, target)

    def get(self, host: str, remote: str, local: str) -> None:
        write_atomic(local, Path(remote).read_bytes())

    def list_dir(self, host: str, path: str) -> list[tuple[str, int, bool]]:
        out = []
        with os.scandir(path) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                out.append((entry.name, st.st_size, entry.is_file(follow_symlinks=False)))
        return out

    def same_file(self, host: str, path: str, content: str) -> bool:
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace") == content
        except OSError:
            return False

    def port_free(self, host: str, port: int) -> bool:
        return port_is_free(port)
