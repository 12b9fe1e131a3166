"""The run directory: one folder per run holding everything needed to understand it later.

Layout::

    run.json          command, plan, versions, times, status, every process's pid/pgid/exit
                      (written by ``launcher.record.RunRecordWriter`` only)
    config.yaml       the resolved training config (overrides applied, device_target set)
    rank_table.json   HCCL rank table (Ascend only)
    hostfile          the hosts of a multi-host run (``--resume`` runs on them again; a restart
                      that left hosts out under ``--min-devices`` rewrites it)
    logs/<host>-rank<k>.log, logs/scheduler.log   plain output lines of each process
    metrics.jsonl     every worker event as received, plus "host"
    checkpoints/, classes.json, eval.json         written by rank 0
    data-index/       the data's index (one scan per run), mapped by every rank

``run.json`` is rewritten atomically on every change, so a script reading it never sees half a
file: pids appear as soon as a process starts, exit codes as soon as it ends.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import re
from pathlib import Path

from cluster.errors import PlanError

METRICS = "metrics.jsonl"
LOG_DIR = "logs"
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def utc_stamp(now: _dt.datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS`` in UTC (the run directory suffix)."""
    now = now or _dt.datetime.now(_dt.UTC)
    return now.astimezone(_dt.UTC).strftime("%Y%m%d-%H%M%S")


def iso_time(ts: float) -> str:
    """UNIX seconds -> ISO 8601 UTC with milliseconds."""
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="milliseconds")


def check_run_name(name: str) -> str:
    """A run name must be usable as one path component."""
    if not _NAME_OK.match(name or ""):
        raise PlanError(f"run name {name!r} cannot be used in a directory name; use letters, digits "
                        f"and . _ + - only (set it with --name, or checkpoint_name in the config)")
    return name


def default_run_dir(root: str | os.PathLike, name: str, now: _dt.datetime | None = None) -> Path:
    """``<root>/<name>-<UTC YYYYmmdd-HHMMSS>`` (absolute)."""
    return Path(root).resolve() / f"{check_run_name(name)}-{utc_stamp(now)}"


#: Held (flock) by the launcher running the run, for its whole lifetime; the kernel drops it
#: when the launcher ends, however it ends.
LOCK_NAME = ".wrn-launch.lock"


class RunDirBusy(PlanError):
    """Another launcher holds the run directory."""


class RunDirLock:
    """An exclusive lock on a run directory, held while this launcher runs it.

    ``acquire`` takes it without waiting (``RunDirBusy`` if another launcher holds it) and
    writes this process's pid into the lock file; ``release`` (or the process ending, even by
    SIGKILL) frees it. ``is_held(path)`` tells a reader whether some launcher holds it now.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            holder = _lock_holder(self.path)
            raise RunDirBusy(f"run directory {self.path.parent} is in use by another wrn-launch "
                             f"({holder}); wait for it to end, or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def is_held(run_dir: Path) -> bool:
        """True when a launcher holds ``run_dir``'s lock now (False: none, or no lock file)."""
        try:
            fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False


def _lock_holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="utf-8").strip()
    except OSError:
        return "pid unknown"
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


#: A batch job's script and its Slurm job id, written into the run directory by
#: ``wrn-launch sbatch`` before the run starts (with config.yaml and the job's slurm-<id>.out).
BATCH_SCRIPT = "job.sbatch"
SLURM_JSON = "slurm.json"


def _before_run(path: Path) -> set[str]:
    """Names a run directory may hold before its run starts: the lock; with a batch script,
    also what ``wrn-launch sbatch`` and Slurm wrote there."""
    if not (path / BATCH_SCRIPT).is_file():
        return {LOCK_NAME}
    return {LOCK_NAME, BATCH_SCRIPT, SLURM_JSON, "config.yaml"} | \
        {p.name for p in path.glob("slurm-*.out")}


def check_run_dir(path: Path) -> None:
    """Refuse an existing non-empty directory (or a file) before anything is started."""
    if path.exists() and not path.is_dir():
        raise PlanError(f"run directory {path} exists and is not a directory; pass another "
                        f"--run-dir or remove that file")
    if path.is_dir() and any(p.name not in _before_run(path) for p in path.iterdir()):
        raise PlanError(f"run directory {path} already exists and is not empty, and a run never "
                        f"writes over another; pass a new --run-dir, or use --name to get a fresh "
                        f"runs/<name>-<time> directory")


def create_run_dir(path: Path, explicit: bool) -> tuple[Path, RunDirLock]:
    """Create the run directory and lock it. A default name that is taken gets a ``-2``,
    ``-3``... suffix; an explicit one must be new or empty, checked again once it is locked (so
    two launchers given the same --run-dir at the same instant cannot both use it)."""
    if explicit:
        check_run_dir(path)
        path.mkdir(parents=True, exist_ok=True)
        lock = RunDirLock(path).acquire()
        try:
            check_run_dir(path)
        except PlanError:
            lock.release()
            raise
        return path, lock
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = path, 1
    while True:
        try:
            candidate.mkdir()
            return candidate, RunDirLock(candidate).acquire()
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}-{n}")


def archive_logs(run_dir: Path, attempt: int) -> None:
    """Move the logs of attempt ``attempt`` to logs/attempt-<attempt>/ (kept, never overwritten)."""
    logs = Path(run_dir) / LOG_DIR
    if not logs.is_dir():
        return
    target = logs / f"attempt-{attempt}"
    target.mkdir(exist_ok=True)
    for item in logs.iterdir():
        if item.is_file():
            os.replace(item, target / item.name)


def path_inside(root: str | os.PathLike, rel: str | os.PathLike) -> Path | None:
    """``root / rel`` resolved (links followed) when it lies inside ``root``, else None: the one
    check for every path read from a run record or sent by a remote host."""
    base = Path(root).resolve()
    try:
        target = (base / rel).resolve()
    except (OSError, ValueError):  # a NUL byte, a link loop
        return None
    return target if target != base and target.is_relative_to(base) else None

