"""run.json as a typed value: ``RunRecord`` and the one writer of the file.

The launcher keeps a ``RunRecord`` in memory and ``RunRecordWriter.save`` writes it (atomically)
whenever it changes; ``runs``, ``report``, ``logs`` and ``--resume`` read it back with
``RunRecord.from_dict``. Reading is lenient: a field of the wrong type (a damaged or hand-edited
file, or one from an older version) is read as missing rather than crashing the reader.

Layout of run.json (``"format": 1``)::

    format, command, cwd, versions, backend, plan, env, config, rank_table,
    attempt (this attempt's number, 1-based), attempts (earlier attempts), max_restarts,
    status ("running", "succeeded", "failed", "interrupted", "preempted"), start_time, end_time,
    wall_s, exit_code, processes [{name, role, host, rank, pid, pgid, start_time, end_time,
    exit_code, signal, error, log, stalled (workers: warned about as stalled and not heard from
    since)}], agents [{host, pid}], root_cause, summary, launcher_error,
    shrinks (hosts a restart left out, ``--min-devices``; only when there were some),
    standbys ([{attempt, state, start_time, ready_s, reason}], ``--standby``; only with it),
    machines ({host: {usable_cores, and for the launching host cpu, cores, memory_gib}},
    ``launcher.hostinfo``; older runs have none)
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.hosts import mask_env
from launcher.rundir.files import WriteTrouble
from wrn.contract import number, text, whole
from wrn.fileio import write_atomic

RUN_JSON = "run.json"
FORMAT = 1
STATUSES = ("running", "succeeded", "failed", "interrupted", "preempted")


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass
class ProcessRecord:
    """One process of an attempt: identity, pid/pgid once started, exit once ended."""

    name: str
    role: str
    host: str
    rank: int | None = None
    pid: int | None = None
    pgid: int | None = None
    start_time: str | None = None
    end_time: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    error: str | None = None
    log: str | None = None
    stalled: bool | None = None      # a worker warned about as stalled, not heard from since

    def json_text(self) -> str:
        """This entry as run.json writes it (computed once: a record is replaced, not changed)."""
        text = self.__dict__.get("_json")
        if text is None:
            text = self.__dict__["_json"] = _dumps(self.to_dict())
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "host": self.host, "rank": self.rank,
                "pid": self.pid, "pgid": self.pgid, "start_time": self.start_time,
                "end_time": self.end_time, "exit_code": self.exit_code, "signal": self.signal,
                "error": self.error, "log": self.log,
                **({"stalled": self.stalled} if self.stalled is not None else {})}

    @classmethod
    def from_dict(cls, data: Any) -> ProcessRecord | None:
        if not isinstance(data, dict):
            return None
        return cls(name=text(data.get("name")) or "?", role=text(data.get("role")) or "worker",
                   host=text(data.get("host")) or "?", rank=whole(data.get("rank")),
                   pid=whole(data.get("pid")), pgid=whole(data.get("pgid")),
                   start_time=text(data.get("start_time")), end_time=text(data.get("end_time")),
                   exit_code=whole(data.get("exit_code")), signal=text(data.get("signal")),
                   error=text(data.get("error")), log=text(data.get("log")),
                   stalled=data.get("stalled") if isinstance(data.get("stalled"), bool) else None)


@dataclass
class AgentRecord:
    """One node agent: its host and its pid there."""

    host: str
    pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid}

    @classmethod
    def from_dict(cls, data: Any) -> AgentRecord | None:
        if not isinstance(data, dict):
            return None
        return cls(text(data.get("host")) or "?", whole(data.get("pid")))


@dataclass
class AttemptRecord:
    """What run.json keeps of an earlier attempt: times, status, processes, root cause, and why
    it ended (``outcome``: "restarted" after a failure, "ended" before a ``--resume``)."""

    attempt: int
    outcome: str
    logs: str
    status: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    exit_code: int | None = None
    processes: list[ProcessRecord] = field(default_factory=list)
    root_cause: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    restart_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"attempt": self.attempt, "outcome": self.outcome, "logs": self.logs,
               "status": self.status, "start_time": self.start_time, "end_time": self.end_time,
               "exit_code": self.exit_code, "processes": [p.to_dict() for p in self.processes],
               "root_cause": self.root_cause, "summary": self.summary}
        if self.restart_reason:
            out["restart_reason"] = self.restart_reason
        return out

    @classmethod
    def from_dict(cls, data: Any) -> AttemptRecord | None:
        if not isinstance(data, dict):
            return None
        number = whole(data.get("attempt")) or 0
        return cls(attempt=number, outcome=text(data.get("outcome")) or "ended",
                   logs=text(data.get("logs")) or f"logs/attempt-{number}",
                   status=text(data.get("status")), start_time=text(data.get("start_time")),
                   end_time=text(data.get("end_time")), exit_code=whole(data.get("exit_code")),
                   processes=[p for p in map(ProcessRecord.from_dict, _list(data.get("processes")))
                              if p is not None],
                   root_cause=_dict(data.get("root_cause")), summary=_dict(data.get("summary")),
                   restart_reason=text(data.get("restart_reason")))


@dataclass
class RunRecord:
    """Everything run.json says about a run (see the module docstring for the layout)."""

    command: list[str] | None = None
    cwd: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    backend: str | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    config: str | None = None
    rank_table: str | None = None
    attempt: int = 1
    attempts: list[AttemptRecord] = field(default_factory=list)
    max_restarts: int = 0
    status: str = "running"
    start_time: str | None = None
    end_time: str | None = None
    wall_s: float | None = None
    exit_code: int | None = None
    processes: list[ProcessRecord] = field(default_factory=list)
    agents: list[AgentRecord] = field(default_factory=list)
    root_cause: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    launcher_error: str | None = None
    shrinks: list[dict[str, Any]] = field(default_factory=list)
    standbys: list[dict[str, Any]] = field(default_factory=list)
    machines: dict[str, dict[str, Any]] = field(default_factory=dict)
    format: int = FORMAT

    def to_dict(self, processes: bool = True) -> dict[str, Any]:
        """The JSON-ready form written to run.json (``processes=False``: that list left empty,
        for a writer that spells the processes itself)."""
        out: dict[str, Any] = {
            "format": self.format, "command": self.command, "cwd": self.cwd,
            "versions": self.versions, "backend": self.backend, "plan": self.plan,
            "env": self.env, "config": self.config, "rank_table": self.rank_table,
            "attempt": self.attempt, "attempts": [a.to_dict() for a in self.attempts],
            "max_restarts": self.max_restarts, "status": self.status,
            "start_time": self.start_time,
            "processes": [p.to_dict() for p in self.processes] if processes else [],
            "agents": [a.to_dict() for a in self.agents], "root_cause": self.root_cause}
        for name in ("end_time", "wall_s", "exit_code", "summary", "launcher_error"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.shrinks:
            out["shrinks"] = self.shrinks
        if self.standbys:
            out["standbys"] = self.standbys
        if self.machines:
            out["machines"] = self.machines
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Read a run.json object; fields of the wrong type count as missing."""
        command = data.get("command")
        return cls(
            command=[str(c) for c in command] if isinstance(command, list) else None,
            cwd=text(data.get("cwd")), versions=_dict(data.get("versions")) or {},
            backend=text(data.get("backend")), plan=_dict(data.get("plan")) or {},
            env={str(k): str(v) for k, v in (_dict(data.get("env")) or {}).items()},
            config=text(data.get("config")), rank_table=text(data.get("rank_table")),
            attempt=whole(data.get("attempt")) or 1,
            attempts=[a for a in map(AttemptRecord.from_dict, _list(data.get("attempts")))
                      if a is not None],
            max_restarts=whole(data.get("max_restarts")) or 0,
            status=text(data.get("status")) or "unknown", start_time=text(data.get("start_time")),
            end_time=text(data.get("end_time")), wall_s=number(data.get("wall_s")),
            exit_code=whole(data.get("exit_code")),
            processes=[p for p in map(ProcessRecord.from_dict, _list(data.get("processes")))
                       if p is not None],
            agents=[a for a in map(AgentRecord.from_dict, _list(data.get("agents"))) if a is not None],
            root_cause=_dict(data.get("root_cause")), summary=_dict(data.get("summary")),
            launcher_error=text(data.get("launcher_error")),
            shrinks=[d for d in map(_dict, _list(data.get("shrinks"))) if d is not None],
            standbys=[d for d in map(_dict, _list(data.get("standbys"))) if d is not None],
            machines={str(k): v for k, v in (_dict(data.get("machines")) or {}).items()
                      if isinstance(v, dict)},
            format=whole(data.get("format")) or FORMAT)

    def as_attempt(self, outcome: str, reason: str | None = None) -> AttemptRecord:
        """This record's current attempt as an entry of ``attempts`` (its logs are archived
        under ``logs/attempt-<n>``)."""
        return AttemptRecord(attempt=self.attempt, outcome=outcome,
                             logs=f"logs/attempt-{self.attempt}", status=self.status,
                             start_time=self.start_time, end_time=self.end_time,
                             exit_code=self.exit_code, processes=list(self.processes),
                             root_cause=self.root_cause, summary=self.summary,
                             restart_reason=reason)

    def dropped_hosts(self) -> list[str]:
        """One line per host a restart left out (``--min-devices``), for the summary."""
        return [f"{d.get('host')} ({d.get('devices')} device(s)) before attempt "
                f"{shrink.get('attempt')}: {d.get('reason')}; world size "
                f"{shrink.get('world_size_before')} -> {shrink.get('world_size_after')}"
                for shrink in self.shrinks for d in shrink.get("dropped") or ()
                if isinstance(d, dict)]

    def next_attempt(self, outcome: str, reason: str | None = None) -> RunRecord:
        """A fresh record for the next attempt: this one moved into ``attempts``."""
        return dataclasses.replace(
            self, attempt=self.attempt + 1, attempts=self.attempts + [self.as_attempt(outcome, reason)],
            status="running", start_time=None, end_time=None, wall_s=None, exit_code=None,
            processes=[], agents=[], root_cause=None, summary=None, launcher_error=None)


def masked_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """``plan.to_dict()`` with secret environment values masked (for run.json): secret-looking
    names, and the plan's own ``secret_names``."""
    out = dict(plan)
    names = plan.get("secret_names") or ()
    out["processes"] = [{**p, "env": mask_env(p.get("env") or {}, names)}
                        for p in plan.get("processes", [])]
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))


def record_json(record: RunRecord, plan_cache: dict[str, Any] | None = None) -> str:
    """run.json's text: one top-level key per line, and one line per element of its lists of
    objects (processes, agents, attempts), so that it reads well and diffs well. Every piece
    goes through the json module's C encoder (an indented dump of a 1,000-rank record takes
    the pure-Python one, 30x slower); each process's line is made once per change of that
    process, and ``plan_cache`` keeps the plan's text while the plan is the same object (the
    largest part of the file, replaced per attempt and never changed)."""
    lines = []
    for key, value in record.to_dict(processes=False).items():
        if key == "processes":
            body = ",\n".join(f"    {p.json_text()}" for p in record.processes)
            lines.append(f'  "processes": [\n{body}\n  ]' if body else '  "processes": []')
        elif key == "plan" and plan_cache is not None and plan_cache.get("of") is record.plan:
            lines.append(plan_cache["text"])
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            body = ",\n".join(f"    {_dumps(v)}" for v in value)
            lines.append(f"  {_dumps(key)}: [\n{body}\n  ]")
        else:
            lines.append(f"  {_dumps(key)}: {_dumps(value)}")
            if key == "plan" and plan_cache is not None:
                plan_cache.update({"of": record.plan, "text": lines[-1]})
    return "{\n" + ",\n".join(lines) + "\n}\n"


#: The longest a change of run.json waits (plus one monitor loop turn) in the largest runs.
MAX_WRITE_INTERVAL_S = 0.5
#: Interval per process of the run: a write costs time in proportion to the processes listed,
#: so small runs write at once and 1,000 processes at most twice a second.
WRITE_INTERVAL_PER_PROCESS_S = 0.0005


class RunRecordWriter:
    """The only code that writes run.json: atomically, so a reader never sees half of it.

    ``due()`` says whether ``interval`` seconds have passed since the last write: the monitor
    writes its record at most that often (a change waits at most ``interval`` plus one loop
    turn), so a 1,000-process run costs two writes a second, not one per process start and
    exit. The interval grows with the number of processes (``processes``): 1 ms for two, the
    maximum of 0.5 s from 1,000. The first and the final record are written at once.
    """

    def __init__(self, run_dir: Path, processes: int = 1,
                 trouble: WriteTrouble | None = None) -> None:
        self.path = Path(run_dir) / RUN_JSON
        self.trouble = trouble or WriteTrouble()
        self.interval = min(MAX_WRITE_INTERVAL_S, WRITE_INTERVAL_PER_PROCESS_S * processes)
        self.writes = 0
        self._last = -float("inf")
        self._plan_cache: dict[str, Any] = {}

    def due(self) -> bool:
        """True when a write now keeps to the interval."""
        return time.monotonic() - self._last >= self.interval

    def write(self, record: RunRecord) -> bool:
        """Write ``record`` to run.json now; False when it could not be written (a full disk:
        noted in ``trouble``, the old run.json stays whole and no temporary file is left)."""
        self._last = time.monotonic()
        try:
            write_atomic(self.path, record_json(record, self._plan_cache))
        except OSError as exc:
            self.trouble.failed(self.path, exc)
            return False
        self.writes += 1
        return True


class RecordKeeper:
    """Keeps a running attempt's run.json up to date: a change is noted (``changed``) and the
    record is written when the writer is due (``flush``), or at once (``force``). A process's
    entry (``processes``: name -> an object whose ``record()`` is its ``ProcessRecord``) is
    rebuilt only when that process changed. A write that fails (a full disk) is tried again at
    the next flush."""

    def __init__(self, record: RunRecord, writer: RunRecordWriter, processes: Mapping[str, Any],
                 troubles: tuple[WriteTrouble, ...] = ()) -> None:
        self.record, self.writer = record, writer
        self._processes = processes
        #: every write into the run directory that can fail (run.json's and the others')
        self.troubles = tuple({id(t): t for t in (writer.trouble, *troubles)}.values())
        self._entries = {name: proc.record() for name, proc in processes.items()}
        self._changed: set[str] = set()
        self.dirty = False

    def changed(self, name: str | None = None) -> None:
        """The record (and process ``name``'s entry in it) changed."""
        if name is not None:
            self._changed.add(name)
        self.dirty = True

    def flush(self, force: bool = False) -> None:
        """Write the record if it changed and the writer is due (or ``force``)."""
        if not self.dirty or not (force or self.writer.due()):
            return
        self.dirty = False
        for name in self._changed:
            self._entries[name] = self._processes[name].record()
        self._changed.clear()
        self.record.processes = list(self._entries.values())
        if not self.writer.write(self.record):
            self.dirty = True  # written again when due: the disk may have room by then

    def warnings(self) -> list[str]:
        """The first failed write into the run directory, said once (a full disk)."""
        return [w for w in (t.take_warning() for t in self.troubles) if w is not None]
