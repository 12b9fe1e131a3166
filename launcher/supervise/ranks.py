"""The one live state of a run: ``RunBoard``, with a ``ProcessState`` per process of the plan (a
worker's is its rank's state).

The monitor owns the board and feeds it: processes starting and ending, every worker event,
the launcher's own warnings. The stall policy (``launcher.supervise.stalls``) keeps its
bookkeeping in the same ``ProcessState`` objects and judges with the limits the monitor acts
on. Every view reads the board: the live dashboard, the plain and JSON lines, and run.json
(``ProcessState.record``), so they agree on what each rank is doing and whether it is stalled.

Times are the board's clock (``time.monotonic`` in a launch) and are passed explicitly
(``now``), so a recorded event stream replays to exactly the view a user saw (``replay``).
A board lives for the whole run; each attempt starts it over (``begin_attempt``).
"""

from __future__ import annotations

import collections
import enum
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.plan import LaunchPlan, ProcessSpec
from launcher.agent.handle import TAIL_LINES
from launcher.rundir.layout import iso_time
from launcher.rundir.record import ProcessRecord
from launcher.supervise.progress import RunProgress
from launcher.supervise.stalls import StallPolicy, Warn
from wrn.contract import EpochEnd, Error, Event, Finish, Start, Step, WarningEvent, event_from

#: A rank whose throughput is below this fraction of the median is shown as slow.
SLOW_FRACTION = 0.6
#: A rank silent for this many times the median silence (and at least QUIET_MIN_S) is shown quiet.
QUIET_FACTOR = 3.0
QUIET_MIN_S = 10.0
MAX_WARNINGS = 50


class Outcome(enum.Enum):
    """Where one process of the attempt is, as the monitor judges it."""

    PENDING = "pending"        # planned, not started yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"          # non-zero exit, a signal, or it could not start
    LOST = "lost"              # its agent ended before reporting its exit


@dataclass(eq=False)
class ProcessState:
    """One process of the attempt: who it is, how it runs, what its events say, and the stall
    policy's bookkeeping. ``state`` is what the views show: waiting, starting, training,
    finished, done, stopped, failed, killed or lost."""

    name: str
    host: str
    rank: int | None = None
    device: int | None = None
    role: str = "worker"
    log: str | None = None
    outcome: Outcome = Outcome.PENDING
    pid: int | None = None
    pgid: int | None = None
    start_time: float | None = None          # wall clock, for run.json
    end_time: float | None = None
    exit_code: int | None = None
    signal: str | None = None
    error: str | None = None
    expected_end: bool = False               # it ended while the attempt was being stopped
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    # what its events say
    training: bool = False                   # it sent start, step or epoch_end
    finished: bool = False                   # it sent finish
    errored: bool = False                    # it sent error
    epoch: int | None = None
    step: int | None = None
    steps_per_epoch: int | None = None
    global_step: int | None = None
    loss: float | None = None
    imgs_per_s: float | None = None
    rss: int | None = None                   # bytes, sampled by the live view (local hosts)
    # the stall policy's (board clock)
    started_at: float | None = None
    last_event_at: float | None = None
    last_step_at: float | None = None
    last_step_epoch: Any = None
    step_intervals: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20))
    allowance: float = 0.0                   # extra silence allowed after an epoch's end
    stalled: bool = False                    # warned about, and not heard from since

    @classmethod
    def of(cls, spec: ProcessSpec, device: int | None = None) -> ProcessState:
        return cls(name=spec.name, host=spec.host, rank=spec.rank, device=device, role=spec.role,
                   log=spec.log)

    @property
    def running(self) -> bool:
        return self.outcome is Outcome.RUNNING

    @property
    def ended(self) -> bool:
        return self.outcome in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.LOST)

    @property
    def is_worker(self) -> bool:
        return self.role == "worker" and self.rank is not None

    @property
    def state(self) -> str:
        if self.outcome is Outcome.PENDING:
            return "waiting"
        if self.outcome is Outcome.RUNNING:
            if self.errored:
                return "failed"
            return "finished" if self.finished else "training" if self.training else "starting"
        if self.outcome is Outcome.SUCCEEDED:
            return "done"
        if self.outcome is Outcome.LOST:
            return "lost"
        return "stopped" if self.expected_end else "killed" if self.signal else "failed"

    def record(self) -> ProcessRecord:
        """This process as run.json shows it."""
        return ProcessRecord(name=self.name, role=self.role, host=self.host, rank=self.rank,
                             pid=self.pid, pgid=self.pgid,
                             start_time=iso_time(self.start_time) if self.start_time else None,
                             end_time=iso_time(self.end_time) if self.end_time else None,
                             exit_code=self.exit_code, signal=self.signal, error=self.error,
                             log=self.log, stalled=self.stalled if self.is_worker else None)


class RunBoard:
    """The live state of a run (see the module docstring). ``ranks``: the workers by rank;
    ``processes``: every process by name."""

    def __init__(self, name: str = "", backend: str = "", ranks: Iterable[tuple] = (), *,
                 stalls: StallPolicy | None = None, t0: float | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.name = name
        self.backend = backend
        self.stalls = stalls or StallPolicy()
        self.clock = clock or self.stalls.clock
        self.processes: dict[str, ProcessState] = {}
        self.ranks: dict[int, ProcessState] = {}
        for rank, host, device in ranks:
            self._add(ProcessState(f"rank{rank}", host, rank, device))
        self.t0 = t0
        self.attempt = 1
        self.progress = RunProgress(max(len(self.ranks), 1))
        self.warnings: list[tuple[float, str]] = []
        self.skipped_files: dict[int, int] = {}
        self.stall_warnings = 0
        self.finished_status: str | None = None
        self.outcomes: collections.Counter = collections.Counter({Outcome.PENDING: len(self.ranks)})
        self._begun = bool(self.ranks)  # a board made with its ranks has its first attempt
        self._changes = 0  # counts every change, so derived values are recomputed after one
        self._derived_key: tuple | None = None
        self._derived_value: tuple[float, float | None, int] = (QUIET_MIN_S, None, 0)

    @classmethod
    def from_plan(cls, plan: LaunchPlan, run_dir: str, *, stalls: StallPolicy | None = None,
                  t0: float | None = None) -> RunBoard:
        """A board for ``plan`` running in ``run_dir``."""
        board = cls(os.path.basename(os.path.normpath(run_dir)), plan.backend, stalls=stalls, t0=t0)
        board.begin_attempt(plan, t0, first=True)
        return board

    def _add(self, proc: ProcessState) -> None:
        self.processes[proc.name] = proc
        if proc.is_worker:
            self.ranks[proc.rank] = proc

    def begin_attempt(self, plan: LaunchPlan | None, now: float | None,
                      first: bool | None = None) -> None:
        """An attempt of ``plan`` begins: every process is pending, the progress is new, the
        warnings are kept (a restart's plan may have fewer hosts: ``--min-devices``; None: the
        same ranks again, for a recorded run). ``first``: whether it is the run's first here
        (default: whether none began before)."""
        first = not self._begun if first is None else first
        self._begun = True
        if plan is not None:
            devices = {r.rank: r.device_id for r in plan.ranks}
            specs = [ProcessState.of(spec, devices.get(spec.rank)) for spec in plan.processes]
            world = plan.world_size
        else:
            specs = [ProcessState(p.name, p.host, p.rank, p.device) for p in self.ranks.values()]
            world = self.world_size
        self.processes, self.ranks = {}, {}
        for proc in specs:
            self._add(proc)
        self.progress = RunProgress(world)
        self.stalls.reset()
        self.outcomes = collections.Counter({Outcome.PENDING: len(self.ranks)})
        self.finished_status = None
        self._changes += 1
        if self.t0 is None:
            self.t0 = now
        if not first:
            self.attempt += 1
            self.add_warning(now or 0.0, f"restart {self.attempt - 1}: attempt {self.attempt} started")

    # -- feeding ----------------------------------------------------------------------------------
    @property
    def world_size(self) -> int:
        """Ranks in the whole job."""
        return self.progress.world_size

    @property
    def hosts(self) -> list[str]:
        """Host names in rank order."""
        return list(dict.fromkeys(v.host for v in sorted(self.ranks.values(), key=lambda v: v.rank)))

    def set_outcome(self, proc: ProcessState, outcome: Outcome) -> None:
        """Move ``proc`` to ``outcome``, keeping the per-outcome worker counts (so no event needs
        a pass over every rank)."""
        if proc.is_worker:
            self.outcomes[proc.outcome] -= 1
            self.outcomes[outcome] += 1
        proc.outcome = outcome
        self._changes += 1
        if outcome is not Outcome.RUNNING:
            self.stalls.ended(proc)

    def started(self, proc: ProcessState, now: float, pid: int | None = None,
                pgid: int | None = None, wall: float | None = None) -> None:
        """``proc`` is running (``now`` on the board's clock, ``wall`` for run.json)."""
        proc.pid, proc.pgid = pid, pgid
        proc.start_time = wall or time.time()
        proc.exit_code = proc.signal = None
        self.set_outcome(proc, Outcome.RUNNING)
        if proc.is_worker:
            self.stalls.started(proc, now)

    def exited(self, proc: ProcessState, outcome: Outcome, exit_code: int | None,
               signal: str | None, *, expected: bool = False, wall: float | None = None,
               error: str | None = None) -> None:
        """``proc`` ended (``outcome``: SUCCEEDED, FAILED or LOST)."""
        proc.end_time = wall or time.time()
        proc.exit_code, proc.signal, proc.rss = exit_code, signal, None
        proc.error, proc.expected_end = error, expected
        self.set_outcome(proc, outcome)

    def event(self, proc: ProcessState, event: Event, now: float) -> bool:
        """``proc`` (a worker) sent ``event`` at ``now``. True when it had been warned about as
        stalled (it is heard from again)."""
        self._changes += 1
        self.progress.update(event, now)
        if self.t0 is None:
            self.t0 = now
        if isinstance(event, (Start, Step, EpochEnd)):
            proc.training = True
        if isinstance(event, Start):
            if proc.pid is None:  # a replayed run; else the agent's pid (run.json's) stays
                proc.pid = event.pid
            proc.steps_per_epoch = event.steps_per_epoch
            if event.start_epoch:
                proc.epoch = event.start_epoch
        elif isinstance(event, Step):
            proc.epoch, proc.step, proc.global_step = event.epoch, event.step, event.global_step
            proc.steps_per_epoch = event.steps_per_epoch or proc.steps_per_epoch
            proc.loss, proc.imgs_per_s = event.loss, event.imgs_per_s
        elif isinstance(event, Finish):
            proc.finished = True
        elif isinstance(event, Error):
            proc.errored = True
            self.add_warning(now, f"rank {proc.rank}: {event.error_kind or 'error'}: {event.message}")
        elif isinstance(event, WarningEvent):
            skipped = event.extra.get("skipped_files")
            if isinstance(skipped, int) and not isinstance(skipped, bool):
                self.skipped_files[proc.rank] = skipped
            self.add_warning(now, f"rank {proc.rank}: {event.message}")
        return self.stalls.heard(proc, event, now) if proc.running else False

    def message(self, level: str, text: str, now: float) -> None:
        """A launcher note; warnings and errors are kept for the warnings panel."""
        if level in ("warning", "error"):
            self.add_warning(now, text)

    def add_warning(self, now: float, text: str) -> None:
        """Keep a warning for the dashboard (the newest MAX_WARNINGS)."""
        self.warnings.append((now, text))
        del self.warnings[:-MAX_WARNINGS]

    def check_stalls(self, now: float) -> list:
        """The stall policy's actions now (``StallPolicy.check``); warnings are counted."""
        actions = self.stalls.check(now)
        self.stall_warnings += sum(1 for a in actions if isinstance(a, Warn))
        if actions:
            self._changes += 1
        return actions

    # -- a recorded run ---------------------------------------------------------------------------
    def worker(self, rank: int, host: str | None = None) -> ProcessState:
        """The state of ``rank`` (made when a recorded stream names a rank the board lacks)."""
        proc = self.ranks.get(rank)
        if proc is None:
            proc = ProcessState(f"rank{rank}", host or "?", rank)
            self._add(proc)
            self.outcomes[Outcome.PENDING] += 1
        elif host and proc.host == "?":
            proc.host = host
        return proc

    def feed(self, record: Mapping[str, Any], now: float) -> None:
        """One recorded event (a row of metrics.jsonl, its ``host`` included) at ``now``."""
        event = event_from(record)
        if event is None or not isinstance(event.rank, int):
            return
        host = record.get("host") if isinstance(record.get("host"), str) else None
        proc = self.worker(event.rank, host)
        if proc.outcome is Outcome.PENDING:
            self.started(proc, now, pid=event.pid if isinstance(event, Start) else None)
        self.event(proc, event, now)

    def replay(self, records: Iterable[Mapping[str, Any]], until: float | None = None) -> float:
        """Feed recorded events in order, each at its own ``time``, up to ``until``; the ranks
        count as started at their first event. Returns the last time fed."""
        last = self.t0 or 0.0
        for record in records:
            at = record.get("time")
            if not isinstance(at, (int, float)):
                continue
            if until is not None and at > until:
                break
            self.feed(record, at)
            last = at
        return last

    # -- derived ----------------------------------------------------------------------------------
    def quiet_s(self, proc: ProcessState, now: float) -> float | None:
        """Seconds since the rank's last event (since its start when it has sent none)."""
        since = proc.last_event_at if proc.last_event_at is not None else proc.started_at
        if since is None or proc.ended or proc.finished:
            return None
        return max(0.0, now - since)

    def is_stalled(self, proc: ProcessState, now: float) -> bool:
        """Silent past its limit (the stall policy's, the one the monitor warns at)."""
        return self.stalls.is_stalled(proc, now)

    def quiet_limit(self, now: float) -> float:
        """Silence above this is highlighted: QUIET_FACTOR x the median silence, at least
        QUIET_MIN_S seconds."""
        return self._derived(now)[0]

    def median_imgs_per_s(self) -> float | None:
        """Median throughput of the ranks that are training (None before any reports)."""
        values = sorted(v.imgs_per_s for v in self.ranks.values()
                        if v.imgs_per_s is not None and v.state == "training")
        if not values:
            return None
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    def _derived(self, now: float) -> tuple[float, float | None, int]:
        """(quiet limit, median throughput, ranks reporting throughput) at ``now``: computed
        once per render (one pass over the ranks), not once per rank shown."""
        key = (now, len(self.ranks), self._changes)
        if self._derived_key != key:
            values = sorted(q for q in (self.quiet_s(v, now) for v in self.ranks.values())
                            if q is not None)
            median = values[len(values) // 2] if values else 0.0
            reporting = sum(1 for v in self.ranks.values() if v.imgs_per_s is not None)
            self._derived_value = (max(QUIET_MIN_S, QUIET_FACTOR * median),
                                   self.median_imgs_per_s(), reporting)
            self._derived_key = key
        return self._derived_value

    def is_slow(self, proc: ProcessState, now: float | None = None) -> bool:
        """A training rank named a straggler (``launcher.supervise.stragglers``), or whose
        throughput is below SLOW_FRACTION of the training ranks' median."""
        if now is None:
            median, reporting = self.median_imgs_per_s(), sum(
                1 for v in self.ranks.values() if v.imgs_per_s is not None)
        else:
            _, median, reporting = self._derived(now)
        if proc.rank in self.progress.stragglers.named and proc.state == "training":
            return True
        return (median is not None and proc.imgs_per_s is not None and proc.state == "training"
                and reporting > 1 and proc.imgs_per_s < SLOW_FRACTION * median)

    def problem(self, proc: ProcessState, now: float) -> str | None:
        """``"stalled"``, ``"failed"``, ``"slow"``, ``"quiet"`` or None: why a rank deserves a look."""
        if proc.state in ("failed", "killed", "lost"):
            return "failed"
        if self.is_stalled(proc, now):
            return "stalled"
        if self.is_slow(proc, now):
            return "slow"
        quiet = self.quiet_s(proc, now)
        if quiet is not None and proc.last_event_at is not None and quiet > self.quiet_limit(now):
            return "quiet"
        return None

    def aggregate_imgs_per_s(self, now: float | None = None) -> float | None:
        """Sum of the latest throughput of every rank still training (and, given ``now``,
        not stalled)."""
        values = [v.imgs_per_s for v in self.ranks.values()
                  if v.imgs_per_s is not None and v.state in ("training", "starting")
                  and (now is None or not self.is_stalled(v, now))]
        return sum(values) if values else None

    def latest_eval(self):
        """The newest evaluation event (rank 0's), if any."""
        return self.progress.evals[-1] if self.progress.evals else None

    def elapsed(self, now: float) -> float | None:
        """Seconds since the run started (None before it did)."""
        return None if self.t0 is None else max(0.0, now - self.t0)
