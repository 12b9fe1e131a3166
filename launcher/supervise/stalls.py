"""When a silent worker is warned about, when every rank's stacks are asked for, and when the
stall ends the attempt.

A worker is *starting* until its first ``step`` event (import, cluster start-up, graph
compile) and is measured from its start against ``--startup-timeout``; after that it is
measured from its latest event against the stall limits: explicit (``--stall-timeout`` /
``--stall-kill``) or adaptive (``SupervisorConfig.stall_limits``: a multiple of the slowest
rank's median time between step events and twice the longest silence seen so far, with a
floor; recomputed every few seconds). After an ``epoch_end`` a rank gets that epoch's duration
on top (evaluation, a checkpoint, a new pipeline).

``StallPolicy`` keeps that bookkeeping in the runs's ``ProcessState`` objects (the ones the
dashboard, the plain and JSON lines and run.json read) and answers two questions with the
same limits: ``is_stalled`` (the views': silent past its warning limit now) and ``check``
(the monitor's: which ranks to warn about, and whether one reached its limit, so that the
stacks are asked for ``STACKS_LEAD_S`` before it and the run is stopped at it).
``StacksRound`` is the collection that follows: every agent with running workers is asked
for their stacks, the answers come in, and the round is due once they all answered (or the
wait is over) and the limit is reached, or cancelled when the rank is heard from first.
``StallWatch`` is the monitor's side of both: it says the warnings, runs the rounds, writes
the stacks into the run directory and hands the root cause to the monitor.

Time is an injected clock (``time.monotonic`` in a launch), so all of it is unit-tested in
milliseconds with a fake clock and fake agent handles.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.config import SupervisorConfig
from launcher.supervise.diagnosis import DIAGNOSTICS_DIR, RankStacks, diagnose, write_stacks
from launcher.supervise.result import RootCause
from launcher.ui.formatting import exit_text
from wrn.contract import EpochEnd, Event, Stacks, StacksRequest, Step

if TYPE_CHECKING:
    from launcher.supervise.progress import RunProgress
    from launcher.supervise.ranks import ProcessState, RunBoard

#: How often silent workers are looked for.
STALL_CHECK_S = 0.5
#: The adaptive limits are recomputed this often.
LIMITS_EVERY_S = 5.0
#: The stacks are asked for this long before a stall reaches its limit (at most a quarter of
#: the limit), so that the run is stopped at the limit, not after the collection.
STACKS_LEAD_S = 1.0
#: How long an agent waits for its workers' stacks, and how much longer the launcher waits
#: for the agents' answers before it stops the run without the missing ones.
STACKS_TIMEOUT_S = 2.0
STACKS_SLACK_S = 3.0


@dataclass(frozen=True)
class Warn:
    """Say that ``proc`` looks stalled (it is marked ``stalled`` until it is heard from)."""

    proc: ProcessState
    text: str


@dataclass(frozen=True)
class Stall:
    """``proc`` reaches its limit at ``stop_at``: collect every rank's stacks, then fail it."""

    proc: ProcessState
    reason: str
    stop_at: float
    since: float | None


class StallPolicy:
    """See the module docstring. ``started``/``heard``/``ended`` are fed by the run's board."""

    def __init__(self, options: SupervisorConfig | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.opts = options or SupervisorConfig()
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """A new attempt: nothing tracked, no step times, no silence seen."""
        # running workers, oldest sign of life first: before their first step, and after it
        self._starting: dict[str, ProcessState] = {}
        self._active: dict[str, ProcessState] = {}
        self._next_check = 0.0
        self._longest_gap = 0.0
        self._limits_due = 0.0
        self._limits = self.opts.stall_limits()

    # -- feeding --------------------------------------------------------------------------------
    def started(self, proc: ProcessState, now: float) -> None:
        """A worker process started: it is starting, measured from now."""
        proc.started_at, proc.last_event_at = now, None
        self._starting[proc.name] = proc

    def heard(self, proc: ProcessState, event: Event, now: float) -> bool:
        """``proc`` emitted ``event``. Once it has stepped it moves to the end of the quiet
        order; its step times feed the adaptive limit. True when it had been warned about
        (it is no longer stalled)."""
        if proc.last_event_at is not None and proc.name in self._active:
            self._longest_gap = max(self._longest_gap, now - proc.last_event_at)
        proc.last_event_at = now
        if isinstance(event, Step):
            if proc.last_step_at is not None and event.epoch == proc.last_step_epoch:
                proc.step_intervals.append(now - proc.last_step_at)
            proc.last_step_at, proc.last_step_epoch, proc.allowance = now, event.epoch, 0.0
        elif isinstance(event, EpochEnd):
            proc.allowance = event.seconds or 0.0  # evaluation takes less than the epoch
        if isinstance(event, Step) or proc.name in self._active:
            self._starting.pop(proc.name, None)
            self._active.pop(proc.name, None)
            if proc.running:
                self._active[proc.name] = proc
        was, proc.stalled = proc.stalled, False
        return was

    def ended(self, proc: ProcessState) -> None:
        """``proc`` ended: no more checks for it (``stalled`` keeps saying whether it ended
        stalled, for run.json)."""
        self._starting.pop(proc.name, None)
        self._active.pop(proc.name, None)

    # -- judging --------------------------------------------------------------------------------
    def limits(self, now: float) -> tuple[float, float]:
        """(warn, kill) seconds of silence for a worker that has stepped (adaptive ones are
        recomputed every ``LIMITS_EVERY_S`` from the running workers' step intervals)."""
        if not self.opts.adaptive:
            return self.opts.stall_limits()
        if now >= self._limits_due:
            self._limits_due = now + LIMITS_EVERY_S
            medians = [statistics.median(p.step_intervals) for p in self._active.values()
                       if p.step_intervals]
            self._limits = self.opts.stall_limits(max(medians, default=0.0), self._longest_gap)
        return self._limits

    def _judged(self, proc: ProcessState, now: float):
        """(quiet, warn, kill, extra, what) for a tracked worker, None for anything else."""
        if proc.name in self._starting and self._starting[proc.name] is proc:
            return (now - proc.started_at, self.opts.startup_timeout, self.opts.startup_kill, 0.0,
                    "since it started")
        if proc.name in self._active and self._active[proc.name] is proc:
            warn, kill = self.limits(now)
            return now - proc.last_event_at, warn, kill, proc.allowance, "since its last event"
        return None

    def is_stalled(self, proc: ProcessState, now: float) -> bool:
        """Silent past its warning limit at ``now`` (what every view shows as stalled)."""
        judged = self._judged(proc, now)
        return judged is not None and judged[0] >= judged[1] + judged[3]

    def check(self, now: float) -> list[Warn | Stall]:
        """What to do about silent workers now: warnings, then at most one ``Stall``. Looks at
        most every ``STALL_CHECK_S``, and only at the quiet end of each order (workers are kept
        in order of their last sign of life)."""
        if now < self._next_check:
            return []
        self._next_check = now + STALL_CHECK_S
        actions: list[Warn | Stall] = []
        for order in (self._starting, self._active):
            for proc in list(order.values()):
                quiet, warn, kill, extra, what = self._judged(proc, now)
                since = now - quiet
                if quiet < warn:
                    self._next_check = min(self._next_check, since + warn)
                    break  # every later one was heard from more recently
                if quiet < warn + extra:
                    continue  # between epochs: checkpoint, evaluation, a new pipeline
                limit = kill + extra
                lead = min(STACKS_LEAD_S, limit / 4)
                if quiet >= limit - lead:
                    actions.append(Stall(proc, f"stalled: no event for {limit:.0f} s {what} "
                                               f"(limit {limit:g} s)", since + limit,
                                         proc.last_event_at))
                    return actions
                self._next_check = min(self._next_check, since + limit - lead)
                if not proc.stalled:
                    proc.stalled = True
                    actions.append(Warn(proc, f"rank {proc.rank} on {proc.host} looks stalled: no "
                                              f"event for {quiet:.0f} s {what}; it is treated as "
                                              f"failed after {kill + extra:.0f} s"))
        return actions

    @property
    def all_stepped(self) -> bool:
        """No running worker is still before its first step."""
        return not self._starting

    def check_soon(self) -> None:
        """Look again at the next ``check`` (a stall that was not one after all)."""
        self._next_check = 0.0


class StacksRound:
    """One collection of every running worker's stacks, for a stall of ``proc`` (or for a
    worker that ``failed`` inside a collective: whom did it wait for?)."""

    def __init__(self, proc: ProcessState, reason: str, hosts: Iterable[str], now: float, *,
                 failed: bool = False, stop_at: float = 0.0, since: float | None = None) -> None:
        self.proc, self.reason, self.failed = proc, reason, failed
        self.stop_at, self.since = stop_at, since
        self.deadline = max(now + STACKS_TIMEOUT_S + STACKS_SLACK_S, stop_at)
        self.waiting = set(hosts)
        self.answers: list[RankStacks] = []

    @classmethod
    def begin(cls, proc: ProcessState, reason: str, processes: Iterable[ProcessState],
              agents: Mapping[str, Any], now: float, **kwargs: Any) -> StacksRound:
        """A round for ``proc``: every live agent with running workers is asked now."""
        hosts = {p.host for p in processes if p.running and p.is_worker}
        round_ = cls(proc, reason, {h for h in hosts if agents[h].alive}, now, **kwargs)
        round_.ask(agents)
        return round_

    def ask(self, agents: Mapping[str, Any]) -> None:
        """Send the request to every agent it waits for."""
        for host in sorted(self.waiting):
            agents[host].send(StacksRequest(STACKS_TIMEOUT_S))

    def answer(self, host: str, proc: ProcessState, msg: Stacks) -> None:
        """One worker's stacks (``proc``: its state) came from the agent on ``host``."""
        self.answers.append(RankStacks(rank=proc.rank, host=host, name=msg.name,
                                       position=msg.position, stacks=msg.stacks,
                                       process=msg.process, error=msg.error, pid=msg.pid))

    def answered(self, host: str) -> None:
        """The agent on ``host`` sent every stack it has."""
        self.waiting.discard(host)

    def status(self, now: float) -> str:
        """``"cancelled"`` (the rank was heard from, or ended, before its limit), ``"waiting"``
        or ``"due"`` (every answer is in or the wait is over, and the limit is reached)."""
        if not self.failed and (self.proc.last_event_at != self.since or not self.proc.running):
            return "cancelled"
        if (self.waiting and now < self.deadline) or now < self.stop_at:
            return "waiting"
        return "due"

    def cause(self, ranks: Mapping[int, ProcessState], progress: RunProgress,
              attempt: int) -> RootCause:
        """The root cause, once due: the rank that is not where the others are (``diagnose``)
        is blamed, with where every rank was; a worker that failed in a collective is blamed
        only when no other rank stands out."""
        proc = self.proc
        failed = {}
        if self.failed:
            failed[proc.rank] = RankStacks(rank=proc.rank, host=proc.host, name=proc.name,
                                           position=progress.position(proc.rank),
                                           error=exit_text(proc.exit_code, proc.signal))
        found = diagnose(self.answers, failed)
        blamed = ranks.get(found.odd_rank, proc) if found.odd_rank is not None else proc
        where = found.lines + [f"no answer from the agent on {h}" for h in sorted(self.waiting)]
        folder = f"{DIAGNOSTICS_DIR}/attempt-{attempt}" if self.answers else None
        if self.failed and blamed is proc:  # no other rank stands out: the failure is the cause
            cause = RootCause.of(proc, self.reason, progress.error_text(proc.rank))
        else:
            reason = self.reason
            if self.failed:
                reason = (f"did not reach the collective: rank {proc.rank} {self.reason} "
                          f"waiting for it")
            elif blamed is not proc:
                reason += f" (rank {proc.rank} was the first found silent)"
            cause = RootCause(name=blamed.name, host=blamed.host, rank=blamed.rank, reason=reason,
                              log=blamed.log, log_tail=list(blamed.tail),
                              error=progress.error_text(blamed.rank))
        cause.where, cause.diagnostics = where, folder
        return cause


class StallWatch:
    """The monitor's side of stalls (see the module docstring). ``console`` is the run's
    ``RunConsole`` (warnings and the ranks' health are said there), ``changed(name)`` notes a
    change of a process's run.json entry, ``fail(cause)`` fails the attempt; ``agents`` is the
    monitor's dict of agent handles (by host)."""

    def __init__(self, board: RunBoard, agents: Mapping[str, Any], console: Any,
                 changed: Callable[[str], None], fail: Callable[[RootCause], None],
                 run_dir: Path, attempt: int) -> None:
        self.board, self.agents, self.console = board, agents, console
        self.changed, self.fail = changed, fail
        self.run_dir, self.attempt = run_dir, attempt
        self.round: StacksRound | None = None

    def tick(self, now: float, stopping: bool) -> None:
        """Warn about silent workers and begin a round for a stall (not while stopping, nor
        while a round runs); fail the attempt once a round is due."""
        if not stopping and self.round is None:
            for action in self.board.check_stalls(now):
                if isinstance(action, Stall):
                    self.begin(action.proc, action.reason, stop_at=action.stop_at,
                               since=action.since)
                else:
                    self.changed(action.proc.name)
                    self.console.health(action.proc, stalled=True)
                    self.console.message("warning", action.text)
        self._check(now, stopping)

    def begin(self, proc: ProcessState, reason: str, failed: bool = False,
              stop_at: float = 0.0, since: float | None = None) -> None:
        """Ask every agent with running workers for their stacks: a stall of ``proc``, or
        ``failed`` (it failed inside a collective: whom did it wait for?)."""
        if failed:
            self.console.message("warning", f"rank {proc.rank} on {proc.host} {reason}; "
                                            f"collecting every running rank's stacks")
        self.round = StacksRound.begin(proc, reason, self.board.processes.values(), self.agents,
                                       self.board.clock(), failed=failed, stop_at=stop_at,
                                       since=since)
        self._check(self.board.clock(), False)

    def on_stacks(self, host: str, msg: Stacks) -> None:
        proc = self.board.processes.get(msg.name)
        if self.round is not None and proc is not None and proc.rank is not None:
            self.round.answer(host, proc, msg)

    def on_done(self, host: str, stopping: bool) -> None:
        if self.round is not None:
            self.round.answered(host)
            self._check(self.board.clock(), stopping)

    def _check(self, now: float, stopping: bool) -> None:
        """Cancel the round (the rank was heard from) or, once due, write the stacks and fail
        the attempt with the rank that is not where the others are."""
        pending = self.round
        status = pending.status(now) if pending is not None else None
        if status == "cancelled":  # heard from (or ended) before its limit: no stall after all
            self.round = None
            self.board.stalls.check_soon()
        elif status == "due":
            self.round = None
            if stopping:
                return  # something else failed meanwhile, and is the root cause
            logs = {p.name: p.log for p in self.board.processes.values()}
            for problem in write_stacks(self.run_dir, self.attempt, pending.answers,
                                        pending.reason, logs):
                self.console.message("warning", problem)
            self.fail(pending.cause(self.board.ranks, self.board.progress, self.attempt))
