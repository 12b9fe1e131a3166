"""The run directory on other hosts: its inputs made visible there, rank 0's outputs copied back.

``share_run_dir`` makes the run directory's inputs (config.yaml, rank table) visible on every
host: directly when the path is shared (same marker file seen there), else copied through the
backend (SFTP, exec channels, srun). ``OutputFetcher`` copies rank 0's outputs (checkpoints,
latest.json, eval.json, classes.json) back when rank 0 runs on a host that does not share the
run directory. Everything goes through the ``Backend`` interface: no backend is named here.
"""

from __future__ import annotations

import posixpath
import queue
import secrets
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from cluster.plan import CONFIG_NAME, RANK_TABLE_NAME, LaunchPlan, Node
from launcher.backends.base import Backend
from launcher.rundir.layout import path_inside
from wrn.config import PLAIN_NAME
from wrn.fileio import write_atomic

#: Written into a new run directory; seen with the same content on a host = shared path.
MARKER_NAME = ".wrn-run-marker"


def share_run_dir(run_dir: Path, backend: Backend, nodes: Sequence[Node]) -> dict[str, str]:
    """Make config.yaml (and the rank table) reachable on every host; host -> "shared"/"copied".

    A marker with a random token is written into the run directory; a host that sees the same
    file at the same path shares it. Other hosts get the directory created and the inputs
    copied (over SFTP). Called again before every attempt (a restart may have a new table).
    """
    token = secrets.token_hex(16)
    write_atomic(run_dir / MARKER_NAME, token)
    files = {name: str(run_dir / name) for name in (CONFIG_NAME, RANK_TABLE_NAME, MARKER_NAME)
             if (run_dir / name).exists()}
    how = {}
    for node in nodes:
        there = node.run_dir or str(run_dir)
        if backend.same_file(node.host, f"{there.rstrip('/')}/{MARKER_NAME}", token):
            how[node.host] = "shared"
        else:
            backend.put(node.host, there, files)
            how[node.host] = "copied"
    return how


#: Files rank 0 leaves at the top of the run directory, copied back at the end of an attempt.
RESULT_FILES = ("eval.json", "per_class.csv", "classes.json")
#: What a file or folder name sent by a remote host may look like to be copied back.
REMOTE_NAME = PLAIN_NAME


def confined_relative(path: str, remote_dir: str) -> str | None:
    """``path`` (absolute inside ``remote_dir``, or relative to it) as a relative path whose every
    part is a plain name (``REMOTE_NAME``, no ``..``); None for anything else."""
    if not isinstance(path, str) or "\x00" in path:
        return None
    remote_dir = remote_dir.rstrip("/")
    if posixpath.isabs(path):
        if not path.startswith(remote_dir + "/"):
            return None
        path = path[len(remote_dir) + 1:]
    parts = path.split("/")
    if not all(part != ".." and REMOTE_NAME.match(part) for part in parts):
        return None
    return "/".join(parts)


class OutputFetcher:
    """Copies rank 0's outputs from a host that does not share the run directory into the
    local run directory over SFTP, in a background thread: the supervisor only queues paths
    (``fetch``) and waits once at the end of an attempt (``finish``)."""

    def __init__(self, backend: Backend, host: str, remote_dir: str, local_dir: Path) -> None:
        self.backend = backend
        self.host = host
        self.remote_dir = remote_dir.rstrip("/")
        self.local_dir = Path(local_dir)
        self.copied: list[str] = []
        self.problems: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name=f"fetch-{host}", daemon=True)
        self._thread.start()

    def fetch(self, remote_path: str) -> None:
        """Queue one file of the remote run directory (absolute there, or relative to it), and
        the ``checkpoints/latest.json`` beside it; returns at once."""
        self._queue.put(("file", str(remote_path)))

    def finish(self, timeout: float = 600.0) -> list[str]:
        """Queue the final copy (checkpoints/, latest.json, eval.json, classes.json) and wait
        until every copy queued so far is done; returns the problems met (one line each)."""
        done = threading.Event()
        self._queue.put(("final", done))
        if not done.wait(timeout):
            self.problems.append(f"copying rank 0's outputs from {self.host} took more than "
                                 f"{timeout:g} s; copy {self.remote_dir} there by hand")
        problems, self.problems = self.problems, []
        return problems

    def close(self, timeout: float = 600.0) -> None:
        """Finish the pending copies and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    # -- the thread ---------------------------------------------------------------------------
    def _copy(self, rel: str, missing_ok: bool = False) -> None:
        local = path_inside(self.local_dir, rel)
        if local is None:
            self.problems.append(f"{self.host}: {self.remote_dir}/{rel} would be written outside "
                                 f"the local run directory {self.local_dir} (a link there); it "
                                 f"was not copied")
            return
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            self.backend.get(self.host, f"{self.remote_dir}/{rel}", str(local))
            self.copied.append(rel)
        except FileNotFoundError:
            if not missing_ok:
                self.problems.append(f"{self.host}:{self.remote_dir}/{rel} is gone; it was not "
                                     f"copied into {self.local_dir}")
        except Exception as exc:
            self.problems.append(f"cannot copy {self.host}:{self.remote_dir}/{rel} into "
                                 f"{self.local_dir} ({exc})")

    def _final(self) -> None:
        try:
            entries = self.backend.list_dir(self.host, f"{self.remote_dir}/checkpoints")
        except FileNotFoundError:
            entries = []
        except Exception as exc:
            self.problems.append(f"cannot list {self.host}:{self.remote_dir}/checkpoints ({exc})")
            entries = []
        for name, size, regular in sorted(entries, key=lambda e: e[0] == "latest.json"):  # latest last
            if name.startswith(".") or not regular:
                continue  # a checkpoint being written (.<name>.<pid>.part.ckpt)
            if not REMOTE_NAME.match(name):
                self.problems.append(f"{self.host}: {self.remote_dir}/checkpoints/{name!r} is not "
                                     f"a plain file name (letters, digits, '_', '.', '-', '+', '='); "
                                     f"it was not copied")
                continue
            local = self.local_dir / "checkpoints" / name
            if name != "latest.json" and local.is_file() and local.stat().st_size == size:
                continue  # copied when its checkpoint event came
            self._copy(f"checkpoints/{name}", missing_ok=True)
        for name in RESULT_FILES:
            self._copy(name, missing_ok=True)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            kind, arg = item
            if kind == "final":
                self._final()
                arg.set()
                continue
            rel = confined_relative(arg, self.remote_dir)
            if rel is None:
                self.problems.append(f"{self.host}: rank 0 reported {arg!r}, outside the run "
                                     f"directory {self.remote_dir} or not a plain path inside "
                                     f"it (no '..', plain names); it was not copied")
                continue
            self._copy(rel)
            self._copy(str(Path(rel).parent / "latest.json"), missing_ok=True)


def output_fetcher(plan: LaunchPlan, nodes: Sequence[Node], run_dir: Path, backend: Backend,
                   how: Mapping[str, str]) -> OutputFetcher | None:
    """An ``OutputFetcher`` for rank 0's host when it does not share the run directory
    (``how`` from ``share_run_dir``), else None (rank 0 writes there directly)."""
    rank0 = next((p for p in plan.processes if p.role == "worker" and p.rank == 0), None)
    if rank0 is None or how.get(rank0.host) != "copied":
        return None
    node = next(n for n in nodes if n.host == rank0.host)
    return OutputFetcher(backend, rank0.host, node.run_dir or str(run_dir), run_dir)
