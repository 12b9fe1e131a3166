"""The monitor: runs one attempt of a plan through node agents and returns its ``RunResult``.

One ``Monitor`` per attempt. Its main thread starts one agent per host (through the run's
``Backend``; ``launcher.agent.handle`` reads their streams into a queue), then handles, one at a time,
everything that happens:

* agent messages, dispatched through an explicit table (``_handlers``): process started/exited,
  output lines -> ``logs/<host>-rank<k>.log`` (plain text) or ``metrics.jsonl`` (events, parsed
  with ``wrn.contract.parse_record``), progress -> the ``Renderer``; a message type that is not in the
  table is logged at debug level in the agent's log and otherwise ignored;
* the run record (``launcher.rundir.record``) updated and saved on every change (pids as soon as known,
  exit codes as they come);
* first failure wins: a worker exiting non-zero or killed, the scheduler dying while workers
  run, a worker stalled past its allowance, or an agent lost or not startable -> that is the
  root cause; every other process is stopped (SIGTERM to its process group, ``grace`` seconds,
  SIGKILL) and what fails afterwards is not blamed;
* a stall, before that stop: every agent is asked for its workers' Python stacks (for at most
  ``STACKS_TIMEOUT_S`` + ``STACKS_SLACK_S``), they are written to
  ``diagnostics/attempt-<n>/``, and ``launcher.supervise.diagnosis`` names the rank that is not where
  the others are: the root cause, with where every rank was;
* SIGINT/SIGTERM/SIGHUP/SIGUSR1 -> the same clean stop, state INTERRUPTED (PREEMPTED for
  SIGTERM/SIGUSR1 inside a Slurm job), exit 128+signal; a second
  SIGINT skips the grace period.

Exit status of an attempt: 0 succeeded, 1 failed, 128+N interrupted by signal N.
"""

from __future__ import annotations

import collections
import enum
import json
import os
import queue
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cluster.plan import LaunchPlan, ProcessSpec
from launcher.backends.base import Backend, BackendError
from launcher.agent.handle import TAIL_LINES, AgentHandle, Inbound, agent_spec, beat
from launcher.config import SupervisorConfig
from launcher.supervise.diagnosis import DIAGNOSTICS_DIR, RankStacks, diagnose, stacks_file_text, stacks_path
from launcher.agent.proc import kill_group, signal_name
from launcher.supervise.progress import RunProgress
from launcher.supervise.result import RootCause, RunSummary
from launcher.rundir.record import AgentRecord, ProcessRecord, RunRecord, RunRecordWriter
from launcher.ui.formatting import exit_text, who
from launcher.ui.renderers import Renderer
from launcher.rundir.layout import iso_time
from launcher.rundir.files import RunFiles
from launcher.supervise.standby import Say, Standby
from wrn.contract import AgentWarning, Done, Exited, Hello, Line, Stacks, StacksDone, StacksRequest, \
    Started, Stop, Stopping, number, parse_record as parse_event
from wrn.fileio import write_atomic

#: Extra seconds an agent gets beyond the grace period to report that its processes ended,
#: before the launcher kills the recorded process groups itself (local hosts only).
AGENT_STOP_SLACK_S = 5.0
LOOP_S = 0.1
#: How often silent workers are looked for.
STALL_CHECK_S = 0.5
#: How long an agent waits for its workers' stacks, and how much longer the launcher waits
#: for the agents' answers before it stops the run without the missing ones.
STACKS_TIMEOUT_S = 2.0
STACKS_SLACK_S = 3.0
#: The stacks are asked for this long before a stall reaches its limit (at most a quarter of
#: the limit), so that the run is stopped at the limit, not after the collection.
STACKS_LEAD_S = 1.0
#: Names in a worker's error that mean it failed inside a collective (MindSpore's CPU
#: AllReduce gives up after waiting about 30 s for a rank that does not come).
COLLECTIVE_OPS = ("AllReduce", "AllGather", "ReduceScatter", "Broadcast", "collective")


class RunState(enum.Enum):
    """How an attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    PREEMPTED = "preempted"      # SIGTERM or SIGUSR1 inside a Slurm job (scancel, requeue, time limit)


def _interrupted_state(signum: int) -> RunState:
    """PREEMPTED for SIGTERM/SIGUSR1 inside a Slurm job (the workers then write a step
    checkpoint: ``wrn.loop.StopOnSignal``), else INTERRUPTED."""
    if signum in (signal.SIGTERM, signal.SIGUSR1) and os.environ.get("SLURM_JOB_ID"):
        return RunState.PREEMPTED
    return RunState.INTERRUPTED


class ProcState(enum.Enum):
    """Where one process of the attempt is."""

    PENDING = "pending"        # planned, no "started" yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"          # non-zero exit, a signal, or it could not start
    LOST = "lost"              # its agent ended before reporting its exit


@dataclass
class Proc:
    """One process of the attempt: the plan's spec plus the monitor's live bookkeeping."""

    spec: ProcessSpec
    state: ProcState = ProcState.PENDING
    pid: int | None = None
    pgid: int | None = None
    start_time: float | None = None
    end_time: float | None = None
    exit_code: int | None = None
    signal: str | None = None
    error: str | None = None
    started_at: float | None = None          # monotonic
    last_event_at: float | None = None       # monotonic
    last_step_at: float | None = None        # monotonic, its latest step event
    last_step_epoch: Any = None
    step_intervals: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20))
    allowance: float = 0.0                   # extra stall seconds after an epoch's end
    stall_warned: bool = False
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))

    @property
    def running(self) -> bool:
        return self.state is ProcState.RUNNING

    @property
    def ended(self) -> bool:
        return self.end_time is not None

    def record(self) -> ProcessRecord:
        """This process as run.json shows it."""
        s = self.spec
        return ProcessRecord(name=s.name, role=s.role, host=s.host, rank=s.rank, pid=self.pid,
                             pgid=self.pgid,
                             start_time=iso_time(self.start_time) if self.start_time else None,
                             end_time=iso_time(self.end_time) if self.end_time else None,
                             exit_code=self.exit_code, signal=self.signal, error=self.error,
                             log=s.log)


@dataclass
class _StallDiagnosis:
    """A stall being diagnosed: the stacks asked for and the answers so far."""

    proc: "Proc"
    reason: str
    deadline: float
    waiting: set[str]
    failed: bool = False          # proc already failed (in a collective), rather than stalled
    stop_at: float = 0.0          # monotonic: when the stall reaches its limit
    since: float | None = None    # proc's last sign of life when the stacks were asked for
    answers: list[RankStacks] = field(default_factory=list)


@dataclass(frozen=True)
class RunResult:
    """What one attempt came to: its state and exit code, the summary shown at the end, every
    process that failed (by name: rank k's worker is ``rank<k>``), and the final run record."""

    state: RunState
    exit_code: int
    summary: RunSummary
    record: RunRecord
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def root_cause(self) -> RootCause | None:
        return self.summary.root_cause


class Monitor:
    """Runs one attempt of ``plan`` and returns its ``RunResult``; see the module docstring."""

    def __init__(self, plan: LaunchPlan, files: RunFiles, renderer: Renderer, backend: Backend,
                 options: SupervisorConfig, record: RunRecord, writer: RunRecordWriter,
                 notes: dict[str, Any] | None = None, fetcher: Any = None,
                 adopt: Standby | None = None,
                 start_standby: Callable[[Say], Standby | None] | None = None) -> None:
        self.plan = plan
        # a released standby attempt this one continues from (its agents, from now on this
        # monitor's, and held messages), and what starts the next standby once every rank has
        # stepped (launcher.supervise.standby)
        self.adopt = adopt
        self.start_standby = start_standby
        self.standby: Standby | None = None
        self.fetcher = fetcher  # copies rank 0's outputs back (multihost.OutputFetcher) or None
        self.files = files
        self.ui = renderer
        self.backend = backend
        self.opts = options
        self.record = record
        self.writer = writer
        self.notes = notes or {}
        self.procs = {p.name: Proc(p) for p in plan.processes}
        self.progress = RunProgress(plan.world_size)
        self.inbox: queue.Queue = adopt.inbox if adopt is not None else queue.Queue()
        self.agents: dict[str, AgentHandle] = dict(adopt.agents) if adopt is not None else {}
        self.state: RunState | None = None
        self.root_cause: RootCause | None = None
        self.interrupted: int | None = None
        self.stopping_since: float | None = None
        self.stop_deadline: float | None = None
        self.sched_deadline: float | None = None
        self.start_wall = time.time()
        self._pending_signal: int | None = None
        self._terminated_from_outside = False  # a process died of a SIGTERM the launcher did not send
        self._ui_broken = False
        self._dirty = False
        # running workers, oldest sign of life first: before their first event, and after it
        self._starting: dict[str, None] = {}
        self._active: dict[str, None] = {}
        self._next_stall_check = 0.0
        self._diagnosis: _StallDiagnosis | None = None
        self._longest_gap = 0.0
        self._limits_due = 0.0
        self._limits = options.stall_limits()
        self._worker_count = sum(1 for p in plan.processes if p.role == "worker")
        # each process's entry in run.json, rebuilt only when that process changed
        self._proc_records = {name: proc.record() for name, proc in self.procs.items()}
        self._changed: set[str] = set()
        self._worker_states = collections.Counter({ProcState.PENDING: self._worker_count})
        self._handlers: dict[type, Callable[[str, Any], None]] = {
            Hello: self._on_hello, Started: self._on_started, Line: self._on_line,
            Exited: self._on_exited, AgentWarning: self._on_warning,
            Stacks: self._on_stacks, StacksDone: self._on_stacks_done,
            Stopping: lambda host, msg: None, Done: lambda host, msg: None}

    # -- public ----------------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Start every agent, supervise until all have ended, and return the result."""
        handlers = self._install_signal_handlers()
        try:
            self.record.start_time = iso_time(self.start_wall)
            self._save()
            self._ui("run_started", self.plan, str(self.files.root), self.notes)
            for p in self.plan.processes:
                self.files.open_log(p.log)
            if self.adopt is not None:  # its agents were told to go (Standby.release)
                held, self.adopt.held = self.adopt.held, []
                for item in held:
                    self._dispatch(item)
            else:
                for host in self.plan.hosts:
                    spec = agent_spec(self.plan, host, self.opts)
                    self.agents[host] = AgentHandle(host, self.backend, spec, self.inbox)
                self._spawn_agents()
            self._save()
            self._loop()
            self._fetch_outputs()
            return self._finish()
        except BaseException as exc:  # a launcher bug: say so in run.json, then clean up
            self.record.status = "failed"
            self.record.launcher_error = f"{type(exc).__name__}: {exc}"
            self.record.end_time = iso_time(time.time())
            self._dirty = True
            self._flush(force=True)
            raise
        finally:
            for agent in self.agents.values():
                agent.kill()
            self.backend.stop_agents([a.popen for a in self.agents.values()])
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    def _spawn_agents(self) -> None:
        """Spawn every agent (main thread), then their reader threads. A host that cannot be
        reached fails the attempt with that host as the root cause."""
        for agent in self.agents.values():
            try:
                agent.spawn()
            except BackendError as exc:
                self._agent_failed(agent.host, f"cannot start its node agent: {exc}", None)
                break
        for agent in self.agents.values():
            if agent.alive:
                agent.start_readers()

    # -- main loop -------------------------------------------------------------------------------
    def _loop(self) -> None:
        last_tick = last_beat = 0.0
        while any(a.alive for a in self.agents.values()):
            try:
                item = self.inbox.get(timeout=LOOP_S)
            except queue.Empty:
                item = None
            if item is not None:
                self._dispatch(item)
            now = time.monotonic()
            self._check_signal()
            self._check_stalls(now)
            self._check_diagnosis(now)
            self._check_deadlines(now)
            self._check_standby(now)
            self._flush()
            self._warn_write_trouble()
            if now - last_beat >= self.opts.heartbeat_interval:
                last_beat = now
                self._beat_agents()
            if now - last_tick >= 1.0:
                last_tick = now
                self._ui("tick", self.progress)

    def _check_standby(self, now: float) -> None:
        """Start the next standby once every worker has stepped; keep the one started."""
        if self.standby is not None:
            if self.standby.tick(now):
                self._save()
            return
        if self.start_standby is None or self.stopping_since is not None or self._starting \
                or self._worker_states[ProcState.RUNNING] != self._worker_count:
            return
        start, self.start_standby = self.start_standby, None
        self._beat_agents()  # starting it can take a while over SSH (a port check, agents)
        try:
            self.standby = start(lambda level, text: self._ui("message", level, text))
        except Exception as exc:  # a plan or port problem: this attempt goes on without one
            self._ui("message", "warning", f"standby: none started, a restart will start cold: "
                                           f"{type(exc).__name__}: {exc}")
        self._beat_agents()
        if self.standby is not None:
            self.record.standbys.append(self.standby.entry)
            self._save()

    def _beat_agents(self) -> None:
        beat(self.agents.values())

    def _dispatch(self, item: Inbound) -> None:
        agent_log = f"logs/agent-{item.host}.log"
        if item.kind == "message":
            self._handlers[type(item.value)](item.host, item.value)
        elif item.kind == "ignored":
            self.files.log(agent_log, f"debug: ignored an agent message of unknown type "
                                      f"{item.value!r}")
        elif item.kind == "text":
            self.files.log(agent_log, item.value)
        elif item.kind == "stderr":
            self.agents[item.host].stderr_tail.append(item.value)
            self.files.log(agent_log, item.value)
        elif item.kind == "eof":
            self._on_agent_eof(item.host, item.value)

    # -- agent messages --------------------------------------------------------------------------
    def _on_hello(self, host: str, msg: Hello) -> None:
        agent = self.agents[host]
        if agent.pid is None and msg.pid:  # a remote agent: its pid there
            agent.pid = msg.pid
            self._save()

    def _on_started(self, host: str, msg: Started) -> None:
        proc = self.procs.get(msg.name)
        if proc is None:
            return
        proc.pid, proc.pgid = msg.pid, msg.pgid
        proc.start_time = msg.time or time.time()
        proc.started_at = time.monotonic()
        self._set_proc_state(proc, ProcState.RUNNING)
        if proc.spec.role == "worker":
            self._starting[proc.spec.name] = None
        self._save(proc)
        self._ui("process_started", proc.spec.name, proc.spec.rank, host, proc.pid)

    def _on_line(self, host: str, msg: Line) -> None:
        proc = self.procs.get(msg.name)
        if proc is None:
            return
        record = parse_event(msg.line)
        if record is None:
            self.files.log(proc.spec.log, msg.line)
            proc.tail.append(msg.line)
            if proc.spec.rank is not None:
                self._ui("log_line", proc.spec.rank, host, msg.line)
            return
        self.files.metric({**record, "host": host})
        if proc.spec.role != "worker":
            return
        if self.fetcher is not None and proc.spec.rank == 0 and record.get("event") == "checkpoint" \
                and record.get("path"):
            self.fetcher.fetch(record["path"])  # queued; copied by the fetcher's thread
        self._heard_from(proc, record, time.monotonic())
        if proc.stall_warned:
            proc.stall_warned = False
            self._ui("message", "info", f"rank {proc.spec.rank} is emitting events again")
        self.progress.update(record, time.time())
        self._ui("event", host, record, self.progress)
        for straggler in self.progress.stragglers.take_new():
            self._ui("message", "warning", f"{straggler.text()} on "
                                           f"{self._worker_host(straggler.rank)}")

    def _worker_host(self, rank: int) -> str:
        return next((p.spec.host for p in self.procs.values() if p.spec.rank == rank), "?")

    def _on_exited(self, host: str, msg: Exited) -> None:
        proc = self.procs.get(msg.name)
        if proc is None or proc.ended:
            return
        proc.end_time = msg.time or time.time()
        proc.exit_code, proc.signal, proc.error = msg.exit_code, msg.signal, msg.error
        if proc.pid is None and msg.pid:
            proc.pid = msg.pid
        if proc.error:
            proc.tail.append(proc.error)
        ok = proc.exit_code == 0
        if not ok and self._finished(proc):
            # MindSpore 2.10 has been seen to crash (SIGSEGV) in its own shutdown after a rank
            # had reported "finish": the rank's work is complete, so the run is not failed
            proc.error = (f"{exit_text(proc.exit_code, proc.signal)} after it had reported "
                          f"finishing (its results are complete)")
            self._ui("message", "warning", f"{who(proc.spec.name, proc.spec.rank)} on {host} "
                                           f"{proc.error}; counted as succeeded")
            ok = True
        self._set_proc_state(proc, ProcState.SUCCEEDED if ok else ProcState.FAILED)
        self._save(proc)
        self._ui("process_exited", proc.spec.name, proc.spec.rank, host, proc.exit_code, proc.signal,
                 ok or self.stopping_since is not None)
        if self.stopping_since is not None:
            return
        if proc.signal == "SIGTERM":
            self._terminated_from_outside = True  # e.g. scancel signals every process at once
        if proc.spec.role == "worker":
            if not ok and self._in_collective(proc):
                # a rank timed out waiting for the others: a symptom; find who they waited for
                if self._diagnosis is None:
                    self._diagnose(proc, exit_text(proc.exit_code, proc.signal) + " in a collective",
                                   failed=True)
            elif not ok:
                self._fail(proc, exit_text(proc.exit_code, proc.signal))
            elif self._succeeded_workers() == self._worker_count:
                if any(p.spec.role == "scheduler" and not p.ended for p in self.procs.values()):
                    self.sched_deadline = time.monotonic() + self.opts.scheduler_wait
        elif not ok and self._ended_workers() < self._worker_count:
            self._fail(proc, exit_text(proc.exit_code, proc.signal) + " while workers were running")

    def _in_collective(self, proc: Proc) -> bool:
        """``proc`` failed inside a collective (its error or last lines name one) while other
        workers still run: it may only have waited too long for one of them."""
        if not any(p.running and p.spec.role == "worker" for p in self.procs.values()):
            return False
        err = self.progress.errors.get(proc.spec.rank) or {}
        text = " ".join([str(err.get("message", "")), *proc.tail])
        return any(op in text for op in COLLECTIVE_OPS)

    def _finished(self, proc: Proc) -> bool:
        """True when ``proc`` is a worker that reported ``finish`` with status ok."""
        if proc.spec.role != "worker" or proc.spec.rank is None:
            return False
        return (self.progress.finish.get(proc.spec.rank) or {}).get("status") == "ok"

    def _succeeded_workers(self) -> int:
        return self._worker_states[ProcState.SUCCEEDED]

    def _ended_workers(self) -> int:
        return sum(self._worker_states[s] for s in (ProcState.SUCCEEDED, ProcState.FAILED,
                                                    ProcState.LOST))

    def _on_warning(self, host: str, msg: AgentWarning) -> None:
        self._ui("message", "warning", f"agent on {host}: {msg.message}")

    def _on_agent_eof(self, host: str, returncode: int) -> None:
        self.agents[host].alive = False
        self._agent_failed(host, f"node agent ended unexpectedly "
                                 f"({exit_text(*_split_rc(returncode))})", returncode)

    def _agent_failed(self, host: str, reason: str, returncode: int | None) -> None:
        """The agent of ``host`` is gone (or never started): its unfinished processes are lost,
        and if that happened outside a stop, the host is the root cause."""
        lost = [p for p in self.procs.values() if p.spec.host == host and not p.ended]
        for proc in lost:
            # The agent's children died with it (PR_SET_PDEATHSIG), but what they started may
            # live on in their process groups: on this host, kill the recorded groups.
            if self.backend.local and proc.pgid:
                kill_group(proc.pgid, signal.SIGKILL)
            proc.end_time = time.time()
            self._set_proc_state(proc, ProcState.LOST)
            proc.error = f"lost: the node agent on {host} ended before reporting this process's exit"
            self._changed.add(proc.spec.name)
        if lost:
            self._save()
        if lost and self.stopping_since is None:
            agent = self.agents[host]
            cause = RootCause(name=f"agent@{host}", host=host, rank=None, reason=reason,
                              exit_code=returncode, log=f"logs/agent-{host}.log",
                              log_tail=list(agent.stderr_tail))
            self._fail_with(cause)

    # -- failure and stopping ----------------------------------------------------------------------
    def _fail(self, proc: Proc, reason: str) -> None:
        err = self.progress.errors.get(proc.spec.rank) if proc.spec.rank is not None else None
        error = f"{err.get('kind') or 'error'}: {err.get('message')}" if err else proc.error
        self._fail_with(RootCause(name=proc.spec.name, host=proc.spec.host, rank=proc.spec.rank,
                                  reason=reason, exit_code=proc.exit_code, signal=proc.signal,
                                  log=proc.spec.log, log_tail=list(proc.tail), error=error))

    def _fail_with(self, cause: RootCause) -> None:
        if self.root_cause is not None or self.stopping_since is not None:
            return
        self.root_cause = cause
        self._set_state(RunState.FAILED)
        self._ui("message", "error", f"{cause.who} on {cause.host} {cause.reason}; stopping every "
                                     f"other process of the run")
        self._stop(self.opts.grace, f"{cause.who} failed")

    def _stop(self, grace: float, reason: str) -> None:
        now = time.monotonic()
        if self.stopping_since is None:
            self.stopping_since = now
        self.stop_deadline = now + grace + AGENT_STOP_SLACK_S
        for agent in self.agents.values():
            if agent.alive:
                agent.send(Stop(grace, reason))
        self._save()

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
            old[signum] = signal.signal(signum, self._on_signal)
        return old

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._pending_signal = signum  # acted on by the main loop

    def _check_signal(self) -> None:
        signum, self._pending_signal = self._pending_signal, None
        if signum is None:
            return
        name = signal_name(signum)
        if self.stopping_since is None:
            self.interrupted = signum
            self._set_state(_interrupted_state(signum))
            self._ui("message", "warning", f"{name} received: stopping the run (grace "
                                           f"{self.opts.grace:g} s; press Ctrl-C again to kill at once)")
            self._stop(self.opts.grace, f"launcher received {name}")
        elif self.interrupted is None and self._terminated_from_outside:
            # the same SIGTERM reached a worker first (scancel, a preemption, a system
            # shutdown): the run was stopped from outside, not failed; the stop keeps its grace
            self.interrupted = signum
            self._set_state(_interrupted_state(signum))
            self._ui("message", "warning", f"{name} received: the run was stopped from outside")
        else:
            self._ui("message", "warning", f"{name} received again: killing every process now")
            self._stop(0.0, f"launcher received {name} again")

    def _check_stalls(self, now: float) -> None:
        """Warn about, then fail, workers silent for too long. Runs at most every
        ``STALL_CHECK_S``; the workers are kept in order of their last sign of life (start, then
        events), so a check looks only at the quiet ones and the first one that is not. A
        worker is starting until its first step event (import, cluster start-up, graph
        compile) and measured from its start meanwhile."""
        if self.stopping_since is not None or self._diagnosis is not None \
                or now < self._next_stall_check:
            return
        self._next_stall_check = now + STALL_CHECK_S
        warn, kill = self._stall_limits(now)
        for order, warn, kill, what in (
                (self._starting, self.opts.startup_timeout, self.opts.startup_kill, "since it started"),
                (self._active, warn, kill, "since its last event")):
            for name in list(order):
                proc = self.procs[name]
                since = proc.started_at if order is self._starting else proc.last_event_at
                quiet = now - since
                if quiet < warn:
                    self._next_stall_check = min(self._next_stall_check, since + warn)
                    break  # every later one was heard from more recently
                extra = proc.allowance if order is self._active else 0.0
                if quiet < warn + extra:
                    continue  # between epochs: checkpoint, evaluation, a new pipeline
                limit = kill + extra
                lead = min(STACKS_LEAD_S, limit / 4)
                if quiet >= limit - lead:
                    self._diagnose(proc, f"stalled: no event for {limit:.0f} s {what} (limit "
                                         f"{limit:g} s)", stop_at=since + limit,
                                   since=proc.last_event_at)
                    return
                self._next_stall_check = min(self._next_stall_check, since + limit - lead)
                if not proc.stall_warned:
                    proc.stall_warned = True
                    self._ui("message", "warning", f"rank {proc.spec.rank} on {proc.spec.host} looks "
                                                   f"stalled: no event for {quiet:.0f} s {what}; it "
                                                   f"is treated as failed after {kill + extra:.0f} s")

    def _stall_limits(self, now: float) -> tuple[float, float]:
        """(warn, kill) for a training worker (``SupervisorConfig.stall_limits``): adaptive
        ones are recomputed every few seconds from the running workers' step intervals."""
        if not self.opts.adaptive:
            return self.opts.stall_limits()
        if now >= self._limits_due:
            self._limits_due = now + 5.0
            medians = [statistics.median(p.step_intervals) for p in self.procs.values()
                       if p.step_intervals and p.running]
            self._limits = self.opts.stall_limits(max(medians, default=0.0), self._longest_gap)
        return self._limits

    # -- stall diagnosis ---------------------------------------------------------------------------
    def _diagnose(self, proc: Proc, reason: str, failed: bool = False,
                  stop_at: float = 0.0, since: float | None = None) -> None:
        """``proc`` stalls until ``stop_at`` (or ``failed`` in a collective): ask every agent
        for its workers' stacks; the run is failed when they are in and the limit is reached
        (``_check_diagnosis``), unless ``proc`` is heard from meanwhile."""
        hosts = {p.spec.host for p in self.procs.values() if p.running and p.spec.role == "worker"}
        hosts = {h for h in hosts if self.agents[h].alive}
        now = time.monotonic()
        self._diagnosis = _StallDiagnosis(proc, reason, max(now + STACKS_TIMEOUT_S + STACKS_SLACK_S,
                                                            stop_at), hosts, failed, stop_at, since)
        if failed:
            self._ui("message", "warning", f"rank {proc.spec.rank} on {proc.spec.host} {reason}; "
                                           f"collecting every running rank's stacks")
        for host in hosts:
            self.agents[host].send(StacksRequest(STACKS_TIMEOUT_S))
        self._check_diagnosis(time.monotonic())

    def _on_stacks(self, host: str, msg: Stacks) -> None:
        proc = self.procs.get(msg.name)
        if self._diagnosis is None or proc is None or proc.spec.rank is None:
            return
        item = RankStacks(rank=proc.spec.rank, host=host, name=msg.name, position=msg.position,
                          stacks=msg.stacks, process=msg.process, error=msg.error, pid=msg.pid)
        self._diagnosis.answers.append(item)

    def _write_stacks(self, pending: _StallDiagnosis) -> None:
        """Each answer to ``diagnostics/attempt-<n>/<host>-rank<k>.txt``."""
        for item in pending.answers:
            path = stacks_path(self.files.root, self.record.attempt, self.procs[item.name].spec.log)
            if path is None:
                continue
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, stacks_file_text(item, self.record.attempt, pending.reason))
            except OSError as exc:
                self._ui("message", "warning", f"cannot write {path}: {exc.strerror}")

    def _on_stacks_done(self, host: str, msg: StacksDone) -> None:
        if self._diagnosis is not None:
            self._diagnosis.waiting.discard(host)
            self._check_diagnosis(time.monotonic())

    def _check_diagnosis(self, now: float) -> None:
        """Fail the stalled run once every agent answered (or the wait is over)."""
        pending = self._diagnosis
        if pending is None:
            return
        if not pending.failed and (pending.proc.last_event_at != pending.since
                                   or not pending.proc.running):
            self._diagnosis = None  # heard from (or ended) before its limit: no stall after all
            self._next_stall_check = now
            return
        if (pending.waiting and now < pending.deadline) or now < pending.stop_at:
            return
        self._diagnosis = None
        if self.stopping_since is not None:
            return  # something else failed meanwhile, and is the root cause
        self._write_stacks(pending)
        failed = {}
        if pending.failed:
            proc = pending.proc
            failed[proc.spec.rank] = RankStacks(
                rank=proc.spec.rank, host=proc.spec.host, name=proc.spec.name,
                position=self._position_of(proc), error=exit_text(proc.exit_code, proc.signal))
        found = diagnose(pending.answers, failed)
        blamed = pending.proc
        if found.odd_rank is not None:
            blamed = next((p for p in self.procs.values() if p.spec.rank == found.odd_rank
                           and p.spec.role == "worker"), blamed)
        where = found.lines + [f"no answer from the agent on {h}" for h in sorted(pending.waiting)]
        folder = f"{DIAGNOSTICS_DIR}/attempt-{self.record.attempt}" if pending.answers else None
        reason = pending.reason
        if pending.failed and blamed is pending.proc:
            self._fail(pending.proc, reason)  # no other rank stands out: the failure is the cause
            if self.root_cause is not None:
                self.root_cause.where, self.root_cause.diagnostics = where, folder
            return
        if pending.failed:
            reason = (f"did not reach the collective: rank {pending.proc.spec.rank} "
                      f"{pending.reason} waiting for it")
        elif blamed is not pending.proc:
            reason += f" (rank {pending.proc.spec.rank} was the first found silent)"
        err = self.progress.errors.get(blamed.spec.rank)
        self._fail_with(RootCause(
            name=blamed.spec.name, host=blamed.spec.host, rank=blamed.spec.rank, reason=reason,
            log=blamed.spec.log, log_tail=list(blamed.tail),
            error=f"{err.get('kind') or 'error'}: {err.get('message')}" if err else None,
            where=where, diagnostics=folder))

    def _position_of(self, proc: Proc) -> str:
        """A position line (as ``wrn.stacks`` writes it) from the rank's last step event."""
        step = self.progress.last_step.get(proc.spec.rank) or {}
        if not isinstance(step.get("global_step"), int):
            return ""
        per_epoch = step.get("steps_per_epoch") or (self.progress.start.get(proc.spec.rank) or {}).get(
            "steps_per_epoch", "?")
        return (f"epoch={step.get('epoch')} step={step.get('step')} global_step={step['global_step']} "
                f"steps_per_epoch={per_epoch}")

    def _heard_from(self, proc: Proc, record: dict[str, Any], now: float) -> None:
        """``proc`` (a worker) emitted an event: once it has stepped, it moves to the end of
        the quiet order; its step times feed the adaptive stall limit."""
        kind = record.get("event")
        if proc.last_event_at is not None and proc.spec.name in self._active:
            self._longest_gap = max(self._longest_gap, now - proc.last_event_at)
        proc.last_event_at = now
        if kind == "step":
            if proc.last_step_at is not None and record.get("epoch") == proc.last_step_epoch:
                proc.step_intervals.append(now - proc.last_step_at)
            proc.last_step_at, proc.last_step_epoch, proc.allowance = now, record.get("epoch"), 0.0
        elif kind == "epoch_end":
            proc.allowance = number(record.get("seconds")) or 0.0  # evaluation takes less
        if kind == "step" or proc.spec.name in self._active:
            self._starting.pop(proc.spec.name, None)
            self._active.pop(proc.spec.name, None)
            self._active[proc.spec.name] = None

    def _set_proc_state(self, proc: Proc, state: ProcState) -> None:
        """Move ``proc`` to ``state``, keeping the per-state worker counts (so no event needs a
        pass over every rank) and the stall order."""
        if proc.spec.role == "worker":
            self._worker_states[proc.state] -= 1
            self._worker_states[state] += 1
        proc.state = state
        if state is not ProcState.RUNNING:  # ended: no more stall checks for it
            self._starting.pop(proc.spec.name, None)
            self._active.pop(proc.spec.name, None)

    def _check_deadlines(self, now: float) -> None:
        if self.sched_deadline is not None and self.stopping_since is None and now >= self.sched_deadline:
            self._ui("message", "warning", f"the scheduler is still running {self.opts.scheduler_wait:g} s "
                                           f"after the last worker finished; stopping it")
            self._stop(self.opts.grace, "every worker finished")
        if self.stop_deadline is not None and now >= self.stop_deadline:
            self.stop_deadline = now + AGENT_STOP_SLACK_S
            self._ui("message", "warning", "agents did not confirm the stop in time; killing the "
                                           "recorded process groups")
            for proc in self.procs.values():
                if not proc.ended and proc.pgid and self.backend.local:
                    kill_group(proc.pgid, signal.SIGKILL)
            for agent in self.agents.values():
                agent.kill()

    # -- bookkeeping ------------------------------------------------------------------------------
    def _set_state(self, state: RunState) -> None:
        """How the attempt is ending; run.json's status says the same from now on."""
        self.state = state
        self.record.status = state.value

    def _ui(self, method: str, *args: Any) -> None:
        """Call the renderer; a broken terminal or pipe must not break supervision."""
        if self._ui_broken:
            return
        try:
            getattr(self.ui, method)(*args)
        except (OSError, ValueError):
            self._ui_broken = True

    def _save(self, proc: Proc | None = None) -> None:
        """Note that the run record (and ``proc``'s entry in it) changed; it is written at once
        if the writer's interval has passed, else by the loop within that interval (``_flush``)."""
        if proc is not None:
            self._changed.add(proc.spec.name)
        self._dirty = True
        self._flush()

    def _flush(self, force: bool = False) -> None:
        """Bring the run record up to date with the processes and agents and write it, if it
        changed and the writer is due (or ``force``)."""
        if not self._dirty or not (force or self.writer.due()):
            return
        self._dirty = False
        for name in self._changed:
            self._proc_records[name] = self.procs[name].record()
        self._changed.clear()
        self.record.processes = list(self._proc_records.values())
        self.record.agents = [AgentRecord(a.host, a.pid) for a in self.agents.values()]
        self.record.root_cause = self.root_cause.to_dict() if self.root_cause else None
        if not self.writer.write(self.record):
            self._dirty = True  # written again when due: the disk may have room by then
        self._warn_write_trouble()

    def _warn_write_trouble(self) -> None:
        """Say once that the run directory cannot be written (a full disk)."""
        for trouble in {id(t): t for t in (self.files.trouble, self.writer.trouble)}.values():
            warning = trouble.take_warning()
            if warning is not None:
                self._ui("message", "warning", warning)

    def _fetch_outputs(self) -> None:
        """Wait for rank 0's outputs to be copied back (a host not sharing the run dir)."""
        if self.fetcher is None:
            return
        for problem in self.fetcher.finish():
            self._ui("message", "warning", problem)

    def _finish(self) -> RunResult:
        workers = [p for p in self.procs.values() if p.spec.role == "worker"]
        note = None
        if self.interrupted is not None:
            state, code, note = _interrupted_state(self.interrupted), 128 + self.interrupted, \
                f"by {signal_name(self.interrupted)}"
        elif self.root_cause is not None:
            state, code = RunState.FAILED, 1
        elif workers and all(p.state is ProcState.SUCCEEDED for p in workers):
            state, code = RunState.SUCCEEDED, 0
        else:
            state, code, note = RunState.FAILED, 1, "not every worker succeeded"
        self._set_state(state)
        end = time.time()
        top1 = self.progress.top1()
        if top1 is None:
            top1 = _eval_json_top1(self.files.root / "eval.json")
        summary = RunSummary(
            status=state.value, exit_code=code, run_dir=str(self.files.root),
            wall_s=end - self.start_wall, imgs_per_s=self.progress.final_imgs_per_s(),
            final_loss=self.progress.final_loss(), top1=top1,
            best_checkpoint=self.progress.best_checkpoint(),
            replicas_in_sync=self.progress.replicas_in_sync(),
            checksums={r: f.get("checksum") for r, f in sorted(self.progress.finish.items())},
            root_cause=self.root_cause, note=note, stragglers=self.progress.stragglers.to_list(),
            hosts_dropped=self.record.dropped_hosts())
        self.record.end_time = iso_time(end)
        self.record.wall_s = round(end - self.start_wall, 3)
        self.record.exit_code = code
        self.record.summary = summary.to_dict()
        self._dirty = True
        self._flush(force=True)
        if self._dirty:
            self._ui("message", "error", f"the final state ({state.value}) could not be written to "
                                         f"{self.writer.path}: free space there, then "
                                         f"`wrn-launch runs` shows it as lost")
        self._ui("finished", summary)
        failures = {p.spec.name: p.error or exit_text(p.exit_code, p.signal)
                    for p in self.procs.values() if p.state in (ProcState.FAILED, ProcState.LOST)}
        return RunResult(state, code, summary, self.record, failures)


def _split_rc(returncode: int | None) -> tuple[int | None, str | None]:
    if returncode is not None and returncode < 0:
        return returncode, signal_name(-returncode)
    return returncode, None


def _eval_json_top1(path: Path) -> float | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("top1")
    except (OSError, ValueError, AttributeError):
        return None
    return number(value)
