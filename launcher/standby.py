"""A standby attempt: the next attempt of a run, started and waiting, that a restart continues
from in seconds (``--standby``).

A restart otherwise pays a whole cold start again: the interpreters, ``import mindspore``, the
cluster join (MindSpore's CPU collective alone sleeps a fixed 3 s in its address exchange), the
data index and the model. With ``--standby`` (and ``--max-restarts`` left), once every rank of
an attempt has stepped, the launcher starts the next attempt's plan (its own scheduler port)
through the same backend, its workers told to wait (``WRN_STANDBY=1``): each one sets up and
joins the standby cluster, says so with a ``standby`` event and waits on its stdin
(``wrn.train.wait_as_standby``). Its agents' messages are held here meanwhile, and their
heartbeats are sent by the monitor of the running attempt (``tick``).

When the running attempt fails and the restart keeps every host, the next ``Monitor`` adopts
the standby: the held messages are replayed into it and every agent is told ``go``; the
workers resume from the newest checkpoint and train. Otherwise (the run ends, a host is left
out, the standby itself failed) the standby is stopped: its workers see their stdin close and
exit, and the agents' usual stop (SIGTERM, grace, SIGKILL) covers the rest.

run.json's ``standbys`` lists each standby with its state: starting, ready, used, stopped or
failed (with the reason).
"""

from __future__ import annotations

import queue
import time
from typing import Any

from cluster.plan import LaunchPlan, ProcessSpec
from launcher.backend import Backend, BackendError
from launcher.channel import AgentHandle, Exited, Inbound, Line
from launcher.config import SupervisorConfig
from launcher.formatting import exit_text
from launcher.renderers import Renderer
from launcher.rundir import iso_time
from wrn.events import parse as parse_event

#: What tells a worker to wait as a standby (``wrn.train.STANDBY_ENV``).
STANDBY_ENV = "WRN_STANDBY"
#: The longest a standby's stop takes before its agents are killed: its workers hold no state.
STOP_GRACE_S = 1.0
STOP_SLACK_S = 5.0


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
                 attempt: int, ui: Renderer) -> None:
        self.plan = plan
        self.backend = backend
        self.opts = options
        self.ui = ui
        self.inbox: queue.Queue = queue.Queue()
        self.agents: dict[str, AgentHandle] = {}
        self.held: list[Inbound] = []
        self.workers = {p.rank for p in plan.processes if p.role == "worker"}
        self.ready: set[int] = set()
        self.problem: str | None = None
        self.started_at = time.monotonic()
        self.entry: dict[str, Any] = {"attempt": attempt, "state": "starting",
                                      "start_time": iso_time(time.time())}
        self._last_beat = 0.0
        self._tails: dict[str, list[str]] = {}

    @property
    def usable(self) -> bool:
        return self.problem is None and bool(self.agents)

    def start(self) -> None:
        """Start one agent per host (call from the main thread, as for any attempt)."""
        for host in self.plan.hosts:
            spec = {"version": 1, "host": host, "grace": self.opts.grace,
                    "heartbeat": self.opts.heartbeat_timeout,
                    "processes": [standby_process(p) for p in self.plan.processes_on(host)]}
            agent = AgentHandle(host, self.backend, spec, self.inbox)
            try:
                agent.spawn()
            except BackendError as exc:
                self._fail(f"cannot start its node agent on {host}: {exc}")
                break
            self.agents[host] = agent
        for agent in self.agents.values():
            agent.start_readers()
        self.ui.message("info", f"standby: attempt {self.entry['attempt']} is starting (a "
                                f"restart will continue from it)")

    def tick(self, now: float) -> bool:
        """Hold what the agents sent, beat them; True when ``entry`` changed."""
        before = dict(self.entry)
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            self.held.append(item)
            self._look(item)
        if now - self._last_beat >= self.opts.heartbeat_interval:
            self._last_beat = now
            for agent in self.agents.values():
                if agent.alive:
                    agent.send({"cmd": "beat"})
        return self.entry != before

    def _look(self, item: Inbound) -> None:
        if item.kind == "eof":
            if item.host in self.agents:
                self.agents[item.host].alive = False
            self._fail(f"its node agent on {item.host} ended (exit status {item.value})")
        elif item.kind != "message":
            return
        msg = item.value
        if isinstance(msg, Line):
            tail = self._tails.setdefault(msg.name, [])
            tail[:] = (tail + [msg.line])[-3:]
            event = parse_event(msg.line)
            if event is not None and event.get("event") == "standby" and msg.rank in self.workers:
                self.ready.add(msg.rank)
                if self.ready == self.workers and self.entry["state"] == "starting":
                    seconds = time.monotonic() - self.started_at
                    self.entry.update(state="ready", ready_s=round(seconds, 3))
                    self.ui.message("info", f"standby: attempt {self.entry['attempt']} is ready "
                                            f"({seconds:.1f} s after it started)")
        elif isinstance(msg, Exited):
            last = " | ".join(self._tails.get(msg.name, [])[-3:])
            self._fail(f"{msg.name} on {item.host} ended ({exit_text(msg.exit_code, msg.signal)})"
                       + (f"; its last output: {last}" if last else "")
                       + (f"; {msg.error}" if msg.error else ""))

    def _fail(self, problem: str) -> None:
        if self.problem is not None:
            return
        self.problem = problem
        self.entry.update(state="failed", reason=problem)
        self.ui.message("warning", f"standby: attempt {self.entry['attempt']} failed, a restart "
                                   f"will start cold: {problem}")

    def release(self) -> list[Inbound]:
        """For the monitor that adopts this standby: every agent is told ``go``; returns the
        held messages, to be handled before anything that comes after them."""
        self.tick(time.monotonic())
        held, self.held = self.held, []
        for agent in self.agents.values():
            agent.send({"cmd": "go"})
        self.entry["state"] = "used"
        return held

    def stop(self, reason: str) -> None:
        """Stop every process of the standby and wait (briefly) for its agents to end."""
        if self.entry["state"] not in ("failed", "used"):
            self.entry.update(state="stopped", reason=reason)
        for agent in self.agents.values():
            if agent.alive:
                agent.send({"cmd": "stop", "grace": STOP_GRACE_S, "reason": reason})
        deadline = time.monotonic() + STOP_GRACE_S + STOP_SLACK_S
        ended: set[str] = set()
        while len(ended) < len(self.agents) and time.monotonic() < deadline:
            try:
                item = self.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if item.kind == "eof":
                ended.add(item.host)
        for agent in self.agents.values():
            agent.kill()
        self.backend.stop_agents([a.popen for a in self.agents.values()])
