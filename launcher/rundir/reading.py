"""Reading run directories back: ``LoadedRun`` (one run), ``find_runs`` (a folder of them).

A run directory (``launcher.rundir.layout``) holds ``run.json`` (status, plan, times, summary),
``metrics.jsonl`` (every worker event) and ``eval.json`` (rank 0's final evaluation). This
module turns them into the numbers that ``runs``, ``report`` and ``logs`` show. Nothing here
writes: a running run can be read at any time (run.json is replaced atomically, and a
half-written last line of metrics.jsonl is skipped).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher import PROG
from launcher.rundir.layout import LOCK_NAME, METRICS, RunDirLock
from launcher.rundir.record import RUN_JSON, RunRecord
from launcher.supervise.progress import RunProgress
from wrn.contract import Checkpoint, EpochEnd, Eval, Event, Start, Step, WarningEvent, event_from, number
from wrn.fileio import expand_user

#: Shown under the table when a run's status is "lost".
LOST_NOTE = ("lost: run.json still says running, but the launcher was killed before it could record "
             "the end (it no longer holds the run directory's lock, or none of the run's processes "
             f"is alive on this host); `{PROG} --resume RUN_DIR` continues it")


class RunDirError(Exception):
    """A directory that cannot be read as a run; ``str()`` says which file and what to do."""


def pid_alive(pid: Any) -> bool:
    """True if a process with this pid exists on this host and is not a zombie."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] not in (["Z"], ["X"])


def parse_time(text: Any) -> _dt.datetime | None:
    """An ISO 8601 time from run.json (None when missing or malformed); one without a time zone
    (written by hand or by another tool) is read as UTC, the zone run.json is written in."""
    if not isinstance(text, str):
        return None
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=_dt.UTC)


def read_events(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The events of a metrics.jsonl (missing file: none) and how many lines were unreadable."""
    events, bad = [], 0
    try:
        fh = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], 0
    with fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(record, dict) and "event" in record:
                events.append(record)
            else:
                bad += 1
    return events, bad


@dataclass
class EpochRow:
    """One epoch as the report shows it: mean loss over ranks, slowest rank's seconds, total
    throughput (sum over ranks), and the evaluation after it (if any)."""

    epoch: int
    loss: float | None = None
    seconds: float | None = None
    imgs_per_s: float | None = None
    top1: float | None = None
    checkpoint: bool = False


@dataclass
class LoadedRun:
    """One run directory, read back: its run record (run.json), events and final evaluation."""

    path: Path
    record: RunRecord
    events: list[Event] = field(default_factory=list)   # metrics.jsonl, typed
    eval: dict[str, Any] | None = None
    bad_lines: int = 0

    # -- identity ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The run directory's name."""
        return self.path.name

    @property
    def plan(self) -> dict[str, Any]:
        return self.record.plan

    @property
    def summary(self) -> dict[str, Any]:
        return self.record.summary or {}

    @property
    def status(self) -> str:
        """run.json's status, except ``lost`` for a "running" run whose launcher is gone: no
        launcher holds its lock (runs made before the lock existed: none of its processes or
        agents is alive on this host)."""
        status = self.record.status
        if status != "running":
            return status
        if (self.path / LOCK_NAME).exists():  # its launcher holds the lock while it lives
            return "running" if RunDirLock.is_held(self.path) else "lost"
        pids = [p.pid for p in self.record.processes] + [a.pid for a in self.record.agents]
        pids = [p for p in pids if p is not None]
        if pids and not any(pid_alive(p) for p in pids):
            return "lost"
        return status

    @property
    def start(self) -> _dt.datetime | None:
        return parse_time(self.record.start_time)

    @property
    def duration_s(self) -> float | None:
        """Wall seconds of the run (so far, if it is still running)."""
        wall = number(self.record.wall_s)
        if wall is not None:
            return wall
        start, end = self.start, parse_time(self.record.end_time)
        if start is None:
            return None
        if end is None:
            if self.record.status != "running":
                return None
            end = _dt.datetime.now(_dt.UTC)
        return max(0.0, (end - start).total_seconds())

    @property
    def world_size(self) -> int | None:
        size = self.plan.get("world_size")
        if isinstance(size, int):
            return size
        start = self.start_event
        return start.world_size if start else None

    @property
    def backend(self) -> str | None:
        return self.plan.get("device_target") or self.record.backend

    @property
    def hosts(self) -> list[str]:
        return list(self.plan.get("hosts") or [])

    @property
    def devices(self) -> str:
        """``"2 CPU"``, ``"8 Ascend on 2 hosts"``."""
        size = self.world_size
        if size is None:
            return "-"
        text = f"{size} {self.backend or ''}".strip()
        if len(self.hosts) > 1:
            text += f" on {len(self.hosts)} hosts"
        return text

    # -- events -----------------------------------------------------------------------------------
    def of(self, kind: type[Event]) -> list[Any]:
        """Events of one type, in file order."""
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def start_event(self) -> Start | None:
        starts = sorted((e for e in self.of(Start) if e.rank is not None),
                        key=lambda e: (e.rank != 0, e.rank))
        return starts[0] if starts else None

    def _lead_rank(self, kind: type[Event]) -> int | None:
        ranks = sorted({e.rank for e in self.of(kind) if e.rank is not None})
        return ranks[0] if ranks else None

    def step_losses(self) -> list[tuple[int, float]]:
        """(global step, loss) of the lowest reporting rank (rank 0), the newest attempt winning
        where a restart repeated steps."""
        lead = self._lead_rank(Step)
        points: dict[int, float] = {}
        for e in self.of(Step):
            if e.rank == lead and e.global_step is not None and e.loss is not None:
                points[e.global_step] = e.loss
        return sorted(points.items())

    def evals(self) -> list[Eval]:
        """Evaluation events, one per epoch (rank 0's, the newest winning)."""
        by_epoch: dict[int, Eval] = {}
        lead = self._lead_rank(Eval)
        for e in self.of(Eval):
            if e.rank == lead and e.epoch is not None and e.top1 is not None:
                by_epoch[e.epoch] = e
        return [by_epoch[k] for k in sorted(by_epoch)]

    def accuracy(self) -> list[tuple[int, float]]:
        """(epoch, top-1 as a fraction) of every evaluation."""
        return [(e.epoch, e.top1) for e in self.evals()]

    def epochs(self) -> list[EpochRow]:
        """Per-epoch rows from the epoch_end, eval and checkpoint events."""
        per: dict[int, dict[int, EpochEnd]] = {}
        for e in self.of(EpochEnd):
            if e.epoch is not None and e.rank is not None:
                per.setdefault(e.epoch, {})[e.rank] = e  # the newest attempt wins
        rows: dict[int, EpochRow] = {}
        for epoch, ranks in per.items():
            losses = [r.loss for r in ranks.values() if r.loss is not None]
            secs = [r.seconds for r in ranks.values() if r.seconds is not None]
            ips = [r.imgs_per_s for r in ranks.values() if r.imgs_per_s is not None]
            scale = (self.world_size or len(ranks)) / len(ranks) if ips else 1.0
            rows[epoch] = EpochRow(epoch, loss=sum(losses) / len(losses) if losses else None,
                                   seconds=max(secs) if secs else None,
                                   imgs_per_s=sum(ips) * scale if ips else None)
        for e in self.evals():
            rows.setdefault(e.epoch, EpochRow(e.epoch)).top1 = e.top1
        for e in self.of(Checkpoint):
            if e.epoch in rows:
                rows[e.epoch].checkpoint = True
        return [rows[k] for k in sorted(rows)]

    # -- headline numbers --------------------------------------------------------------------------
    @property
    def final_loss(self) -> float | None:
        value = number(self.summary.get("final_loss"))
        return value if value is not None else self.progress().final_loss()

    @property
    def top1(self) -> float | None:
        for value in (self.summary.get("top1"), (self.eval or {}).get("top1")):
            if number(value) is not None:
                return float(value)
        return self.progress().top1()

    @property
    def imgs_per_s(self) -> float | None:
        value = number(self.summary.get("imgs_per_s"))
        return value if value is not None else self.progress().final_imgs_per_s()

    def progress(self) -> RunProgress:
        """The events fed through the launcher's own bookkeeping: the final numbers of a run
        whose summary is missing (still running, or its launcher was killed) are computed the
        same way as a finished run's."""
        progress = RunProgress(self.world_size or 1)
        for event in self.events:
            progress.update(event, event.time or 0.0)
        return progress

    @property
    def skipped_files(self) -> int:
        counts = (e.extra.get("skipped_files") for e in self.of(WarningEvent))
        return sum(n for n in counts if isinstance(n, int) and not isinstance(n, bool))


def read_run_record(path: str | Path) -> tuple[Path, RunRecord]:
    """(run directory, its run record); raises ``RunDirError`` (one paragraph) when it is not one."""
    root = expand_user(path)
    if not root.is_dir():
        raise RunDirError(f"{path}: no such directory; pass a run directory made by {PROG} "
                          f"(`{PROG} runs` lists them)")
    try:
        info = json.loads((root / RUN_JSON).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path} is not a run directory: it has no {RUN_JSON}; pass a directory "
                          f"made by {PROG} (`{PROG} runs` lists them)") from None
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{root / RUN_JSON} cannot be read ({exc}); the run directory is "
                          f"damaged — its logs/ and {METRICS} may still help") from None
    if not isinstance(info, dict):
        raise RunDirError(f"{root / RUN_JSON} does not hold a JSON object; the run directory is damaged")
    return root, RunRecord.from_dict(info)


def load_run(path: str | Path) -> LoadedRun:
    """Read a run directory; raises ``RunDirError`` (one paragraph) when it is not one."""
    root, record = read_run_record(path)
    events, bad = read_events(root / METRICS)
    try:
        ev = json.loads((root / "eval.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        ev = None
    typed = [e for e in map(event_from, events) if e is not None]
    return LoadedRun(path=root.resolve(), record=record, events=typed,
                     eval=ev if isinstance(ev, dict) else None, bad_lines=bad)


def find_runs(root: str | Path) -> list[LoadedRun]:
    """Every run directory directly inside ``root`` (or ``root`` itself if it is one), oldest
    first. Unreadable ones are skipped."""
    base = expand_user(root)
    if not base.is_dir():
        raise RunDirError(f"{root}: no such directory; pass the folder that holds run directories "
                          f"(default ./runs, the launcher's --runs-root)")
    candidates = [base] if (base / RUN_JSON).is_file() else sorted(p for p in base.iterdir() if p.is_dir())
    records = []
    for candidate in candidates:
        if not (candidate / RUN_JSON).is_file():
            continue
        try:
            records.append(load_run(candidate))
        except RunDirError:
            continue
    far = _dt.datetime.max.replace(tzinfo=_dt.UTC)
    return sorted(records, key=lambda r: (r.start or far, r.name))
