"""Where a run's processes start: the interface every backend (one module of this package each)
implements, and what they share.

A backend finds the launch's nodes, starts the node agent (``python -m launcher.agent``, see
``launcher.agent``) of each host, with the JSON-lines protocol on its stdin/stdout, and moves
files in and out of that host's run directory. Every backend has the same small interface:

* ``discover(request, held)`` (a class method): the nodes of the launch, pre-flighted (their
  addresses, devices, cores, interpreter, project path and run directory there), with the
  backend itself and the scheduler port put in ``held`` as soon as they exist (so a failure
  later in the checks releases them);
* ``spawn_agent(host)``: start the agent; returns a ``Popen``-like object;
* ``agent_cmd(host)``: the argv it runs there (tests assert on it);
* ``put(host, remote_dir, files)`` / ``get(host, remote, local)`` / ``list_dir(host, path)`` /
  ``same_file(host, path, content)``: files of the run directory there;
* ``port_free(host, port)``: whether the scheduler could bind ``port`` on that host now;
* ``stop_agents(agents)``: end the agents of an attempt (their hosts then stop their workers);
* ``recheck(request, nodes)`` / ``forget(host)``: a restart's pre-flight of the hosts (``--min-devices``
  leaves out those that fail it), and dropping a host;
* ``worker_env()`` and ``record_run(run_dir, nodes)``: what this way of starting adds to every
  worker's environment and to the run directory;
* ``close()``: release everything at the end of the run.

A backend lives as long as the run: a restart spawns new agents through the same connections.
``launcher.backends`` chooses one (``--launcher``); docs/ARCHITECTURE.md walks through adding one.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cluster.hosts import HostSpec
    from cluster.plan import Node
    from cluster.ranktable.table import RankTable
    from launcher.config import LaunchConfig
    from launcher.rundir.record import RunRecord
    from launcher.session.resources import HeldResources
    from wrn.config import TrainConfig


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


@dataclass(frozen=True)
class DiscoveryRequest:
    """What a backend's ``discover`` is given: the launch's config and training config, the
    device backend (``target``: ascend, gpu or cpu, and ``how`` it was chosen), the run
    directory (its path here), the host list of an SSH launch, and the record of the run a
    ``--resume`` continues."""

    config: LaunchConfig
    train: TrainConfig
    target: str
    how: str
    run_dir: Path
    hosts: tuple[HostSpec, ...] = ()
    previous: RunRecord | None = None


@dataclass
class Discovery:
    """What ``discover`` found: the nodes (rank order), the Ascend device IPs per host, this
    host's share of a ``--rank-table`` (the table, its server index), the cores near each
    device for binding, and lines for the plan view."""

    nodes: tuple[Node, ...]
    device_ips: dict[str, dict[int, str]] = field(default_factory=dict)
    rank_table: tuple[RankTable, int] | None = None
    device_cpus: dict[str, dict[int, tuple[int, ...]]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Backend:
    """Base class: where agents run, how they are started and how files reach them."""

    #: True when agents run on this machine (the launcher may then clean up by itself).
    local = False

    @classmethod
    def discover(cls, request: DiscoveryRequest, held: HeldResources) -> Discovery:
        """The nodes of the launch, checked; sets ``held.backend`` (an instance of this class)
        and ``held.port`` (the scheduler port, when there is one). Raises ``LaunchError`` or
        ``PlanError`` (one paragraph each) for anything wrong; what ``held`` holds is released
        by the caller then."""
        raise NotImplementedError

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

    def recheck(self, request: DiscoveryRequest, nodes: Sequence[Node]) -> dict[str, str]:
        """For a restart: the hosts of ``nodes`` that fail their pre-flight now, with why
        (host -> problems); none on a backend whose hosts cannot be lost apart from the run."""
        return {}

    def forget(self, host: str) -> None:
        """Drop ``host`` from the run (its connection closed)."""

    def worker_env(self) -> dict[str, str]:
        """Variables this way of starting adds to every worker's environment."""
        return {}

    def record_run(self, run_dir: Path, nodes: Sequence[Node]) -> None:
        """Write what this way of starting keeps in the run directory (a job's id, say)."""

    def close(self) -> None:
        """Release whatever the backend holds (connections); called once, when the run ends."""
        self.stop_agents()

