"""How the launcher reaches a host's node agent: one small class per way of getting there.

Each transport's ``agent_cmd(host)`` returns the argv that starts ``python -m launcher.agent``
for ``host`` with the JSON-lines protocol on its stdin/stdout (see ``launcher.agent``); tests
assert on that list. Only the local transport exists so far; a remote one (SSH) adds a class
whose command runs the same agent on the other host.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: Tells a local agent its launcher's pid, so it can tell whether the launcher already died.
PARENT_ENV = "WRN_AGENT_PARENT"
#: The directory holding the ``launcher``, ``cluster`` and ``wrn`` packages.
PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


def python_path(existing: str | None = None) -> str:
    """PYTHONPATH that makes this project importable (``-m wrn.train``) from any directory."""
    parts = [PROJECT_ROOT] + [p for p in (existing or "").split(os.pathsep) if p and p != PROJECT_ROOT]
    return os.pathsep.join(parts)


class Transport:
    """Base class: where agents run and how they are started."""

    #: True when the agent runs on this machine (the launcher may then clean up by itself).
    local = False

    def agent_cmd(self, host: str) -> list[str]:
        """argv that starts the node agent for ``host``."""
        raise NotImplementedError

    def agent_env(self, host: str) -> dict[str, str] | None:
        """Environment for the agent process (None: inherit the launcher's)."""
        return None

    def spawn(self, host: str) -> Any:
        """Start the agent of ``host``: a ``Popen`` (or an object with the same ``stdin``,
        ``stdout``, ``stderr``, ``pid``, ``poll``, ``wait`` and ``kill``)."""
        return subprocess.Popen(
            self.agent_cmd(host), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=self.agent_env(host), close_fds=True,
            process_group=0)  # its own group: a terminal's Ctrl-C reaches only the launcher

    def close(self) -> None:
        """Release whatever the transport holds (connections); called when the run ends."""


class LocalTransport(Transport):
    """The agent is a child process of the launcher, run with the launcher's own interpreter.

    ``sys.executable`` is used rather than whatever ``python`` is first on PATH, so the agent and
    the workers run in the environment the launcher was started from.
    """

    local = True

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    def agent_cmd(self, host: str) -> list[str]:
        return [self.python, "-m", "launcher.agent"]

    def agent_env(self, host: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = python_path(env.get("PYTHONPATH"))
        env["PYTHONUNBUFFERED"] = "1"
        env[PARENT_ENV] = str(os.getpid())
        return env
