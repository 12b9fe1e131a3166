"""The monitor: runs one attempt of a plan through node agents and returns its ``RunResult``.

One ``Monitor`` per attempt. Its main thread starts one agent per host (through the run's
``Backend``; ``launcher.agent.handle`` reads their streams into a queue), then handles, one at
a time, everything that happens:

* agent messages, dispatched through an explicit table (``_handlers``): a process started or
  exited, an output line (to ``logs/<host>-rank<k>.log`` as text, or to ``metrics.jsonl`` and
  the run's ``RunBoard`` as an event), stacks; a message type not in the table is logged at
  debug level in the agent's log and otherwise ignored;
* the run record, kept up to date (``RecordKeeper``: pids as soon as known, exit codes as they
  come);
* first failure wins: a worker exiting non-zero or killed, the scheduler dying while workers
  run, a worker stalled past its limit (``launcher.supervise.stalls``), or an agent lost or not
  startable -> that is the root cause; every other process is stopped (SIGTERM to its process
  group, ``grace`` seconds, SIGKILL) and what fails afterwards is not blamed; before a stall
  (or after a failure inside a collective) every rank's stacks are collected and the rank that
  is not where the others are is blamed;
* the launcher's signals: the same clean stop (``launcher.supervise.stopping``: grace
  periods, deadlines, what a signal means);
* ``--standby``: the next attempt started once every rank has stepped, and ticked.

Every view reads the board the monitor feeds, so they agree on each rank's state.
"""

from __future__ import annotations

import queue
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cluster.plan import LaunchPlan
from launcher.agent.handle import AgentHandle, Inbound, agent_spec, beat
from launcher.agent.proc import describe_exit, kill_group
from launcher.backends.base import Backend, BackendError
from launcher.config import SupervisorConfig
from launcher.rundir.files import RunFiles
from launcher.rundir.layout import iso_time
from launcher.rundir.record import AgentRecord, RecordKeeper, RunRecord, RunRecordWriter
from launcher.supervise.console import RunConsole
from launcher.supervise.ranks import Outcome, ProcessState, RunBoard
from launcher.supervise.result import RootCause, RunResult, RunState, outcome, summarize
from launcher.supervise.stalls import StallWatch
from launcher.supervise.standby import Say, Standby, StandbySlot
from launcher.supervise.stopping import SignalCatcher, Stopper
from launcher.ui.formatting import exit_text, who
from wrn.contract import (
    AgentWarning,
    Done,
    Exited,
    Hello,
    Line,
    Stacks,
    StacksDone,
    Started,
    Stopping,
    event_from,
    parse_record,
)

if TYPE_CHECKING:
    from launcher.ui.renderers import Renderer

#: The longest the loop waits for an agent message before it looks at the clock again.
LOOP_S = 0.1
#: Names in a worker's error that mean it failed inside a collective (MindSpore's CPU
#: AllReduce gives up after waiting about 30 s for a rank that does not come).
COLLECTIVE_OPS = ("AllReduce", "AllGather", "ReduceScatter", "Broadcast", "collective")


class Monitor:
    """Runs one attempt of ``plan`` and returns its ``RunResult``; see the module docstring.
    ``adopt``: a released standby attempt this one continues from (its agents and held
    messages); ``start_standby``: what starts the next one once every rank has stepped."""

    def __init__(self, plan: LaunchPlan, files: RunFiles, renderer: Renderer, backend: Backend,
                 options: SupervisorConfig, record: RunRecord, writer: RunRecordWriter,
                 board: RunBoard, notes: dict[str, Any] | None = None, fetcher: Any = None,
                 adopt: Standby | None = None,
                 start_standby: Callable[[Say], Standby | None] | None = None) -> None:
        self.plan, self.files, self.backend, self.opts = plan, files, backend, options
        self.ui = RunConsole(renderer, board)
        self.record, self.writer, self.notes, self.fetcher = record, writer, notes or {}, fetcher
        self.adopt, self.next_standby = adopt, StandbySlot(start_standby, record.standbys)
        self.board = board
        board.begin_attempt(plan, board.clock())
        self.procs = board.processes
        self.keeper = RecordKeeper(record, writer, self.procs, (files.trouble,))
        self.inbox: queue.Queue = adopt.inbox if adopt is not None else queue.Queue()
        self.agents: dict[str, AgentHandle] = dict(adopt.agents) if adopt is not None else {}
        self.signals = SignalCatcher()
        self.state: RunState | None = None
        self.root_cause: RootCause | None = None
        self.stopper = Stopper(self.agents, self.procs, backend.local, options, self.ui.message,
                               board.clock)
        self.start_wall = time.time()
        self._workers = len(board.ranks)
        self.stalls = StallWatch(board, self.agents, self.ui, self.keeper.changed, self._fail_with,
                                 files.root, record.attempt)
        self._handlers: dict[type, Callable[[str, Any], None]] = {
            Hello: self._on_hello, Started: self._on_started, Line: self._on_line,
            Exited: self._on_exited, AgentWarning: self._on_warning,
            Stacks: self.stalls.on_stacks,
            StacksDone: lambda host, msg: self.stalls.on_done(host, self.stopper.stopping),
            Stopping: lambda host, msg: None, Done: lambda host, msg: None}

    # -- the attempt ------------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Start every agent, supervise until all have ended, and return the result."""
        self.signals.install()
        try:
            self.record.start_time = iso_time(self.start_wall)
            self._save()
            self.ui.run_started(self.plan, str(self.files.root), self.notes, self.board)
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
            self._save(force=True)
            raise
        finally:
            for agent in self.agents.values():
                agent.kill()
            self.backend.stop_agents([a.popen for a in self.agents.values()])
            self.signals.restore()

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

    def _loop(self) -> None:
        last_tick = last_beat = 0.0
        while any(a.alive for a in self.agents.values()):
            try:
                self._dispatch(self.inbox.get(timeout=LOOP_S))
            except queue.Empty:
                pass
            now = self.board.clock()
            self._check_signal()
            self.stalls.tick(now, self.stopper.stopping)
            if self.stopper.check(now):
                self._save()
            ready = not self.stopper.stopping and self.board.stalls.all_stepped \
                and self.board.outcomes[Outcome.RUNNING] == self._workers
            if self.next_standby.check(now, ready, self.ui.message, lambda: beat(self.agents.values())):
                self.keeper.changed()
            self._flush()
            if now - last_beat >= self.opts.heartbeat_interval:
                last_beat = now
                beat(self.agents.values())
            if now - last_tick >= 1.0:
                last_tick = now
                self.ui.tick(self.board)

    def _dispatch(self, item: Inbound) -> None:
        agent_log = f"logs/agent-{item.host}.log"
        if item.kind == "message":
            self._handlers[type(item.value)](item.host, item.value)
        elif item.kind == "ignored":
            self.files.log(agent_log, f"debug: ignored an agent message of unknown type "
                                      f"{item.value!r}")
        elif item.kind in ("text", "stderr"):
            if item.kind == "stderr":
                self.agents[item.host].stderr_tail.append(item.value)
            self.files.log(agent_log, item.value)
        elif item.kind == "eof":
            self.agents[item.host].alive = False
            code, sig = describe_exit(item.value)
            self._agent_failed(item.host, f"node agent ended unexpectedly ({exit_text(code, sig)})",
                               item.value)

    # -- agent messages ---------------------------------------------------------------------------
    @property
    def standby(self) -> Standby | None:
        """The next attempt's standby, once started (``--standby``)."""
        return self.next_standby.standby

    def _on_hello(self, host: str, msg: Hello) -> None:
        agent = self.agents[host]
        if agent.pid is None and msg.pid:  # a remote agent: its pid there
            agent.pid = msg.pid
            self._save()

    def _on_started(self, host: str, msg: Started) -> None:
        proc = self.procs.get(msg.name)
        if proc is None:
            return
        self.board.started(proc, self.board.clock(), msg.pid, msg.pgid, msg.time)
        self.keeper.changed(proc.name)
        self.ui.process_started(proc.name, proc.rank, host, proc.pid)

    def _on_line(self, host: str, msg: Line) -> None:
        proc = self.procs.get(msg.name)
        if proc is None:
            return
        record = parse_record(msg.line)
        if record is None:
            self.files.log(proc.log, msg.line)
            proc.tail.append(msg.line)
            if proc.rank is not None:
                self.ui.log_line(proc.rank, host, msg.line)
            return
        self.files.metric({**record, "host": host})
        event = event_from(record)
        if not proc.is_worker or event is None:
            return
        if self.fetcher is not None and proc.rank == 0 and record.get("event") == "checkpoint" \
                and getattr(event, "path", None):
            self.fetcher.fetch(event.path)  # queued; copied by the fetcher's thread
        if self.board.event(proc, event, self.board.clock()):
            self.keeper.changed(proc.name)
            self.ui.health(proc, stalled=False)
            self.ui.message("info", f"rank {proc.rank} is emitting events again")
        self.ui.event(host, record, event, self.board)
        for straggler in self.board.progress.stragglers.take_new():
            host_of = self.board.ranks[straggler.rank].host if straggler.rank in self.board.ranks else "?"
            self.ui.message("warning", f"{straggler.text()} on {host_of}")

    def _on_exited(self, host: str, msg: Exited) -> None:
        proc = self.procs.get(msg.name)
        if proc is None or proc.ended:
            return
        if proc.pid is None and msg.pid:
            proc.pid = msg.pid
        ok = msg.exit_code == 0
        error = msg.error
        if error:
            proc.tail.append(error)
        if not ok and proc.finished and self._finish_ok(proc):
            # MindSpore 2.10 has been seen to crash (SIGSEGV) in its own shutdown after a rank
            # had reported "finish": the rank's work is complete, so the run is not failed
            error = (f"{exit_text(msg.exit_code, msg.signal)} after it had reported finishing "
                     f"(its results are complete)")
            self.ui.message("warning", f"{who(proc.name, proc.rank)} on {host} {error}; counted as "
                                       f"succeeded")
            ok = True
        stopping = self.stopper.stopping
        self.board.exited(proc, Outcome.SUCCEEDED if ok else Outcome.FAILED, msg.exit_code,
                          msg.signal, expected=stopping and not ok, wall=msg.time, error=error)
        self.keeper.changed(proc.name)
        self.ui.process_exited(proc.name, proc.rank, host, proc.exit_code, proc.signal, ok or stopping)
        if stopping:
            return
        if proc.signal == "SIGTERM":
            self.stopper.terminated_from_outside = True  # e.g. scancel signals every process at once
        if not proc.is_worker:
            if not ok and self._ended_workers() < self._workers:
                self._fail(proc, exit_text(proc.exit_code, proc.signal) + " while workers were running")
        elif not ok and self._in_collective(proc):
            # a rank timed out waiting for the others: a symptom; find who they waited for
            if self.stalls.round is None:
                self.stalls.begin(proc, exit_text(proc.exit_code, proc.signal) + " in a collective",
                                  failed=True)
        elif not ok:
            self._fail(proc, exit_text(proc.exit_code, proc.signal))
        elif self.board.outcomes[Outcome.SUCCEEDED] == self._workers \
                and any(not p.is_worker and not p.ended for p in self.procs.values()):
            self.stopper.workers_done()

    def _finish_ok(self, proc: ProcessState) -> bool:
        finish = self.board.progress.finish.get(proc.rank)
        return finish is not None and finish.status == "ok"

    def _in_collective(self, proc: ProcessState) -> bool:
        """``proc`` failed inside a collective (its error or last lines name one) while other
        workers still run: it may only have waited too long for one of them."""
        if not any(p.running and p.is_worker for p in self.procs.values()):
            return False
        err = self.board.progress.errors.get(proc.rank)
        text = " ".join([err.message or "" if err else "", *proc.tail])
        return any(op in text for op in COLLECTIVE_OPS)

    def _ended_workers(self) -> int:
        return sum(self.board.outcomes[o] for o in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.LOST))

    def _on_warning(self, host: str, msg: AgentWarning) -> None:
        self.ui.message("warning", f"agent on {host}: {msg.message}")

    def _agent_failed(self, host: str, reason: str, returncode: int | None) -> None:
        """The agent of ``host`` is gone (or never started): its unfinished processes are lost,
        and if that happened outside a stop, the host is the root cause."""
        lost = [p for p in self.procs.values() if p.host == host and not p.ended]
        for proc in lost:
            # The agent's children died with it (PR_SET_PDEATHSIG), but what they started may
            # live on in their process groups: on this host, kill the recorded groups.
            if self.backend.local and proc.pgid:
                kill_group(proc.pgid, signal.SIGKILL)
            self.board.exited(proc, Outcome.LOST, proc.exit_code, proc.signal, error=(
                f"lost: the node agent on {host} ended before reporting this process's exit"))
            self.keeper.changed(proc.name)
        if lost and not self.stopper.stopping:
            self._fail_with(RootCause(name=f"agent@{host}", host=host, rank=None, reason=reason,
                                      exit_code=returncode, log=f"logs/agent-{host}.log",
                                      log_tail=list(self.agents[host].stderr_tail)))

    # -- failing and stopping ---------------------------------------------------------------------
    def _fail(self, proc: ProcessState, reason: str) -> None:
        self._fail_with(RootCause.of(proc, reason, self.board.progress.error_text(proc.rank)))

    def _fail_with(self, cause: RootCause) -> None:
        if self.root_cause is not None or self.stopper.stopping:
            return
        self.root_cause = cause
        self._set_state(RunState.FAILED)
        self.ui.message("error", f"{cause.who} on {cause.host} {cause.reason}; stopping every "
                                 f"other process of the run")
        self._stop(self.opts.grace, f"{cause.who} failed")

    def _stop(self, grace: float, reason: str) -> None:
        self.stopper.stop(grace, reason)
        self._save()

    def _check_signal(self) -> None:
        signum = self.signals.take()
        if signum is not None:
            state = self.stopper.on_signal(signum)
            if state is not None:
                self._set_state(state)
            self._save()

    # -- the record and the end -------------------------------------------------------------------
    def _set_state(self, state: RunState) -> None:
        """How the attempt is ending; run.json's status says the same from now on."""
        self.state = state
        self.record.status = state.value

    def _save(self, force: bool = False) -> None:
        """The run record changed: write it now if the writer is due (or ``force``), else
        within its interval (``_flush`` in the loop)."""
        self.record.agents = [AgentRecord(a.host, a.pid) for a in self.agents.values()]
        self.record.root_cause = self.root_cause.to_dict() if self.root_cause else None
        self.keeper.changed()
        self._flush(force)

    def _flush(self, force: bool = False) -> None:
        self.keeper.flush(force)
        for warning in self.keeper.warnings():  # a full disk, said once
            self.ui.message("warning", warning)

    def _fetch_outputs(self) -> None:
        """Wait for rank 0's outputs to be copied back (a host not sharing the run dir)."""
        if self.fetcher is not None:
            for problem in self.fetcher.finish():
                self.ui.message("warning", problem)

    def _finish(self) -> RunResult:
        workers = [p for p in self.procs.values() if p.is_worker]
        state, code, note = outcome(self.stopper.interrupted, self.root_cause is not None,
                                    bool(workers) and all(p.outcome is Outcome.SUCCEEDED for p in workers))
        self._set_state(state)
        self.board.finished_status = state.value
        end = time.time()
        summary = summarize(state, code, note, self.files.root, end - self.start_wall,
                            self.board.progress, self.root_cause, self.record.dropped_hosts())
        self.record.end_time = iso_time(end)
        self.record.wall_s = round(end - self.start_wall, 3)
        self.record.exit_code = code
        self.record.summary = summary.to_dict()
        self._save(force=True)
        if self.keeper.dirty:
            self.ui.message("error", f"the final state ({state.value}) could not be written to "
                                     f"{self.writer.path}: free space there, then `wrn-launch runs` "
                                     f"shows it as lost")
        self.ui.finished(summary)
        failures = {p.name: p.error or exit_text(p.exit_code, p.signal)
                    for p in self.procs.values() if p.outcome in (Outcome.FAILED, Outcome.LOST)}
        return RunResult(state, code, summary, self.record, failures)
