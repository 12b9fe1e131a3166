"""A standby attempt: the next attempt of a run, started and waiting, that a restart continues
from in seconds (``--standby``).

A restart otherwise pays a whole cold start again: the interpreters, ``import mindspore``, the
cluster join (MindSpore's CPU collective alone sleeps a fixed 3 s in its address exchange), the
data index and the model. With ``--standby`` (and ``--max-restarts`` left), once every rank of
an attempt has stepped, the launcher starts the next attempt's plan (its own scheduler port)
through the same backend, its workers told to wait (``WRN_STANDBY=1``): each one sets up and
joins the standby cluster, says so with a ``standby`` event and waits on its stdin
(``wrn.train.wait_as_standby``). Its agents' messages are held here meanwhile (``tick``, from
the running attempt's monitor loop) and a thread of its own sends their heartbeats, also while
no monitor runs (between attempts: the output copy, the pre-flight of ``--min-devices``).

When the running attempt fails and the restart keeps every host, the next ``Monitor`` adopts
the standby: the held messages are replayed into it and every agent is told ``go``; the
workers resume from the newest checkpoint and train. Otherwise (the run ends, a host is left
out, the standby itself failed) it is stopped: its workers see their stdin close and exit, and
the agents' usual stop (SIGTERM, grace, SIGKILL) covers the rest.

A standby fails, and is stopped at once (a restart then starts cold), when one of its
processes or agents ends, when a worker does anything but wait (a worker without the standby
wait, e.g. a foreign ``--worker-cmd``, would train next to the running attempt), or when it is
not ready within the start-up kill limit.

run.json's ``standbys`` lists each standby with its state: starting, ready, used, stopped or
failed (with the reason).
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from cluster.plan import LaunchPlan, ProcessSpec
from launcher.agent.handle import AgentHandle, Inbound, agent_spec, beat
from launcher.agent.proc import kill_group
from launcher.backends.base import Backend
from launcher.config import SupervisorConfig
from launcher.rundir.layout import iso_time
from launcher.ui.formatting import exit_text
from wrn.contract import (
    STANDBY_ENV,
    Checkpoint,
    EpochEnd,
    Eval,
    Exited,
    Finish,
    Go,
    Line,
    StandbyReady,
    Start,
    Started,
    Step,
    Stop,
    parse_event,
)

#: The longest a standby's stop takes before its agents are killed: its workers hold no state.
STOP_GRACE_S = 1.0
STOP_SLACK_S = 5.0
#: Events a waiting worker never sends: seeing one means it did not wait.
NOT_WAITING = (Start, Step, EpochEnd, Eval, Checkpoint, Finish)

Say = Callable[[str, str], None]


def standby_process(proc: ProcessSpec) -> dict[str, Any]:
    """A process of the plan as a standby agent starts it: a worker waits for ``go``."""
    spec = proc.to_dict()
    if proc.role == "worker":
        spec["env"] = {**spec["env"], STANDBY_ENV: "1"}
        spec["standby"] = True
    return spec


class Standby:
    """The agents and held messages of one standby attempt (see the module docstring)."""

    def __init__(self, plan: LaunchPlan, backend: Backend, options: SupervisorConfig,
                 attempt: int, say: Say) -> None:
        self.plan = plan
        self.backend = backend
        self.opts = options
        self.say = say  # (level, text) -> the run's console, guarded by the monitor
        self.inbox: queue.Queue = queue.Queue()
        self.agents: dict[str, AgentHandle] = {}
        self.held: list[Inbound] = []
        self.workers = {p.rank for p in plan.processes if p.role == "worker"}
        self.ready: set[int] = set()
        self.problem: str | None = None
        self.started_at = time.monotonic()
        self.entry: dict[str, Any] = {"attempt": attempt, "state": "starting",
                                      "start_time": iso_time(time.time())}
        self._ended: set[str] = set()      # hosts whose agent's output ended
        self._groups: dict[str, int] = {}  # process groups its agents reported, until they exit
        self._tails: dict[str, list[str]] = {}
        self._beating = threading.Event()
        self._stop_sent = False

    @property
    def usable(self) -> bool:
        return self.problem is None and bool(self.agents)

    def start(self) -> None:
        """Start one agent per host (call from the main thread, as for any attempt) and the
        heartbeat thread. A failure to start fails the standby, never the caller."""
        problem = None
        for host in self.plan.hosts:
            agent = AgentHandle(host, self.backend,
                                agent_spec(self.plan, host, self.opts, standby_process), self.inbox)
            try:
                agent.spawn()
            except Exception as exc:  # BackendError, or anything else: the running attempt goes on
                problem = f"cannot start its node agent on {host}: {exc}"
                break
            self.agents[host] = agent
        for agent in self.agents.values():
            agent.start_readers()
        if problem is not None:
            self._fail(problem)
            self.stop_soon()
            return
        self._beating.set()
        threading.Thread(target=self._beat, daemon=True).start()
        self.say("info", f"standby: attempt {self.entry['attempt']} is starting (a restart will "
                         f"continue from it)")

    def _beat(self) -> None:
        """Heartbeats for its agents until it is adopted or stopped (``AgentHandle.send`` is
        thread-safe)."""
        while self._beating.is_set():
            beat(list(self.agents.values()))
            time.sleep(self.opts.heartbeat_interval)

    def tick(self, now: float) -> bool:
        """Hold what the agents sent and check on the standby; True when ``entry`` changed."""
        before = dict(self.entry)
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            self.held.append(item)
            self._look(item)
        if self.entry["state"] == "starting" and now - self.started_at > self.opts.startup_kill:
            self._fail(f"not ready {self.opts.startup_kill:g} s after it started "
                       f"(--startup-timeout)")
        if self.problem is not None and not self._stop_sent:
            self.stop_soon()
        return self.entry != before

    def _look(self, item: Inbound) -> None:
        if item.kind == "eof":
            self._ended.add(item.host)
            if item.host in self.agents:
                self.agents[item.host].alive = False
            self._fail(f"its node agent on {item.host} ended (exit status {item.value})")
        elif item.kind != "message":
            return
        msg = item.value
        if isinstance(msg, Started) and msg.pgid:
            self._groups[msg.name] = msg.pgid
        elif isinstance(msg, Line):
            tail = self._tails.setdefault(msg.name, [])
            tail[:] = (tail + [msg.line])[-3:]
            event = parse_event(msg.line)
            if isinstance(event, NOT_WAITING):
                self._fail(f"{msg.name} on {item.host} did not wait (it sent a {event.kind!r} event: "
                           f"a worker without the standby wait, e.g. from --worker-cmd or an "
                           f"older wrn-launch on that host)")
            elif isinstance(event, StandbyReady) and msg.rank in self.workers:
                self.ready.add(msg.rank)
                if self.ready == self.workers and self.entry["state"] == "starting":
                    seconds = time.monotonic() - self.started_at
                    self.entry.update(state="ready", ready_s=round(seconds, 3))
                    self.say("info", f"standby: attempt {self.entry['attempt']} is ready "
                                     f"({seconds:.1f} s after it started)")
        elif isinstance(msg, Exited):
            self._groups.pop(msg.name, None)
            last = " | ".join(self._tails.get(msg.name, [])[-3:])
            self._fail(f"{msg.name} on {item.host} ended ({exit_text(msg.exit_code, msg.signal)})"
                       + (f"; its last output: {last}" if last else "")
                       + (f"; {msg.error}" if msg.error else ""))

    def _fail(self, problem: str) -> None:
        if self.problem is not None:
            return
        self.problem = problem
        self.entry.update(state="failed", reason=problem)
        self.say("warning", f"standby: attempt {self.entry['attempt']} failed and is stopped; "
                            f"a restart will start cold: {problem}")

    def release(self) -> bool:
        """Before a monitor adopts this standby: every agent is told ``go`` (the monitor then
        handles ``held`` before anything that comes after it). False, with nothing sent, when
        a last look finds it failed."""
        self.tick(time.monotonic())
        if not self.usable:
            return False
        for agent in self.agents.values():
            agent.send(Go())
        self._beating.clear()  # the adopting monitor beats them from now on
        self.entry["state"] = "used"
        return True

    def stop_soon(self) -> None:
        """Tell every agent to stop, without waiting (``stop`` waits)."""
        self._stop_sent = True
        for agent in self.agents.values():
            if agent.alive:
                agent.send(Stop(STOP_GRACE_S, "standby stopped"))

    def _note_end(self, item: Inbound) -> None:
        """While stopping: an agent's output ended, or a process's exit was reported."""
        if item.kind == "eof":
            self._ended.add(item.host)
        elif item.kind == "message" and isinstance(item.value, Exited):
            self._groups.pop(item.value.name, None)

    def stop(self, reason: str) -> None:
        """Stop every process of the standby and wait (briefly) for its agents to end; on this
        host, the process groups of processes whose exit was never reported are killed after
        that (their agent is gone; the groups cannot have been reused before it reaped them)."""
        if self.entry["state"] not in ("failed", "used"):
            self.entry.update(state="stopped", reason=reason)
        self.stop_soon()
        deadline = time.monotonic() + STOP_GRACE_S + STOP_SLACK_S
        while not set(self.agents) <= self._ended and time.monotonic() < deadline:
            try:
                self._note_end(self.inbox.get(timeout=0.1))
            except queue.Empty:
                continue
        self._beating.clear()
        for agent in self.agents.values():
            agent.kill()
        while True:  # what came with the agents' last output
            try:
                self._note_end(self.inbox.get_nowait())
            except queue.Empty:
                break
        if self.backend.local:
            for pgid in self._groups.values():
                kill_group(pgid, signal.SIGKILL)
        self.backend.stop_agents([a.popen for a in self.agents.values()])


class StandbySlot:
    """Where an attempt keeps the next attempt's standby: ``start`` (the session's starter, or
    None without ``--standby``) is called once every rank of the attempt has stepped; the
    standby it returns is added to ``entries`` (run.json's ``standbys``) and ticked from then
    on."""

    def __init__(self, start: Callable[[Say], Standby | None] | None,
                 entries: list[dict[str, Any]]) -> None:
        self.start, self.entries = start, entries
        self.standby: Standby | None = None

    def check(self, now: float, ready: bool, say: Say, beat_agents: Callable[[], None]) -> bool:
        """Tick the standby, or start it when ``ready`` (not stopping, every rank stepped).
        True when run.json's ``standbys`` changed (a standby started, or its state moved)."""
        if self.standby is not None:
            return self.standby.tick(now)
        if self.start is None or not ready:
            return False
        start, self.start = self.start, None
        beat_agents()  # starting it can take a while over SSH (a port check, agents)
        try:
            self.standby = start(say)
        except Exception as exc:  # a plan or port problem: this attempt goes on without one
            say("warning", f"standby: none started, a restart will start cold: "
                           f"{type(exc).__name__}: {exc}")
        beat_agents()
        if self.standby is not None:
            self.entries.append(self.standby.entry)
        return self.standby is not None
