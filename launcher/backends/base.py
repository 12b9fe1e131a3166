"""Where a run's processes start: one small class per way of reaching a host.

A backend starts the node agent (``python -m launcher.agent``, see ``launcher.agent``) of each
host, with the JSON-lines protocol on its stdin/stdout, and moves files in and out of that
host's run directory. Every backend has the same small interface:

* ``spawn_agent(host)``: start the agent; returns a ``Popen``-like object;
* ``agent_cmd(host)``: the argv it runs there (tests assert on it);
* ``put(host, remote_dir, files)`` / ``get(host, remote, local)`` / ``list_dir(host, path)`` /
  ``same_file(host, path, content)``: files of the run directory there;
* ``port_free(host, port)``: whether the scheduler could bind ``port`` on that host now;
* ``stop_agents(agents)``: end the agents of an attempt (their hosts then stop their workers);
* ``close()``: release everything at the end of the run.

A backend lives as long as the run: a restart spawns new agents through the same connections.
``LocalBackend`` (this file) runs agents as child processes; ``launcher.ssh.SSHBackend`` runs
them in channels of verified SSH connections. A new way of starting processes (Slurm, ...) is one
more class with this interface.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Collection, Mapping


#: The directory holding the ``launcher``, ``cluster`` and ``wrn`` packages.
PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


class BackendError(Exception):
    """A host cannot be used (connection lost and not re-made, agent not startable); ``str()``
    names the host and the cause."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host


@functools.lru_cache(maxsize=1)
def source_root() -> str | None:
    """``PROJECT_ROOT`` when it is a source folder (a checkout) that processes need on
    PYTHONPATH; None when the project is installed into this interpreter's environment (a
    wheel). Asked when a launch is prepared, so the node agent does not pay for the lookup."""
    from launcher.installation import installation

    return None if installation()["installed"] else PROJECT_ROOT


def python_path(existing: str | None = None) -> str:
    """PYTHONPATH that makes this project importable (``-m wrn.train``) from any directory: the
    source folder first (none when installed), then ``existing``; "" when nothing is needed."""
    root = source_root()
    first = [root] if root else []
    return os.pathsep.join(first + [p for p in (existing or "").split(os.pathsep)
                                    if p and p != root])


def module_argv(python: str, module: str) -> list[str]:
    """``python -P -m module``: ``-P`` keeps the working directory (and the script's folder)
    off the module path, so files in a shared launch directory cannot shadow the project's or
    the standard library's modules in the agents, workers and scheduler (Python >= 3.11)."""
    return [python, "-P", "-m", module]


class Backend:
    """Base class: where agents run, how they are started and how files reach them."""

    #: True when agents run on this machine (the launcher may then clean up by itself).
    local = False

    def agent_cmd(self, host: str) -> list[str]:
        """argv that starts the node agent for ``host``."""
        raise NotImplementedError

    def spawn_agent(self, host: str) -> Any:
        """Start the agent of ``host``: a ``Popen`` (or an object with the same ``stdin``,
        ``stdout``, ``stderr``, ``pid``, ``poll``, ``wait`` and ``kill``). Raises
        ``BackendError`` when the host cannot be reached."""
        raise NotImplementedError

    def put(self, host: str, remote_dir: str, files: Mapping[str, str]) -> None:
        """Create ``remote_dir`` on ``host`` and copy the local ``files`` (name -> path) into it."""
        raise NotImplementedError

    def get(self, host: str, remote: str, local: str) -> None:
        """Copy ``remote`` on ``host`` to ``local`` atomically."""
        raise NotImplementedError

    def list_dir(self, host: str, path: str) -> list[tuple[str, int, bool]]:
        """(name, size, is a regular file) of each entry of ``path`` on ``host``;
        ``FileNotFoundError`` if there is no such folder."""
        raise NotImplementedError

    def same_file(self, host: str, path: str, content: str) -> bool:
        """True when ``path`` exists on ``host`` with exactly ``content`` (a shared folder)."""
        raise NotImplementedError

    def port_free(self, host: str, port: int) -> bool:
        """True if a TCP server could bind ``port`` on ``host`` now."""
        raise NotImplementedError

    def files_via(self, host: str) -> str:
        """How files reach ``host`` (for the notes of the plan)."""
        return "the file system"

    def stop_agents(self, agents: Collection[Any] | None = None) -> None:
        """End the agents this backend started (called at the end of every attempt): those of
        ``agents`` (what ``spawn_agent`` returned), or every one (None). A standby attempt's
        agents outlive the attempt that started them."""

    def close(self) -> None:
        """Release whatever the backend holds (connections); called once, when the run ends."""
        self.stop_agents()

