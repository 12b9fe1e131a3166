"""The launcher's end of one node agent: its process, its streams, its reader threads.

The agent (``launcher.agent``) and this handle speak the agent protocol of ``wrn.contract``
(JSON lines; typed messages and commands on both ends). ``AgentHandle`` reads the agent's
stdout and stderr in two threads and puts what it reads on the monitor's queue as ``Inbound``
items:

* ``message``: a line that parses into one of the contract's messages (``MESSAGE_TYPES``);
* ``ignored``: a JSON object whose ``type`` the launcher does not handle (logged at debug
  level by the monitor, never dispatched);
* ``text`` / ``stderr``: anything else the agent printed (kept in the agent's log);
* ``eof``: the agent's stdout closed (the agent ended; ``value`` is its exit status).

It writes the agent's ``AgentSpec`` as the first line, then commands (``send``).
"""

from __future__ import annotations

import collections
import json
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cluster.plan import LaunchPlan, ProcessSpec
from launcher.backends.base import Backend
from launcher.config import SupervisorConfig
from wrn.contract import AgentSpec, Beat, Wire, parse_message

TAIL_LINES = 20


@dataclass(frozen=True)
class Inbound:
    """One item from an agent's streams, as queued for the monitor."""

    kind: str          # "message", "ignored", "text", "stderr", "eof"
    host: str
    value: Any


class AgentHandle:
    """The launcher's end of one node agent: its process, its streams, its reader threads."""

    def __init__(self, host: str, backend: Backend, spec: AgentSpec, inbox: queue.Queue) -> None:
        self.host = host
        self.backend = backend
        self.spec = spec
        self.inbox = inbox
        self.popen: Any = None
        self.pid: int | None = None
        self.alive = False
        self.stderr_tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()

    def spawn(self) -> None:
        """Start the agent and send it its spec (call from the main thread, see
        ``launcher.proc.set_pdeathsig``). Raises ``BackendError`` if the host is unreachable."""
        self.popen = self.backend.spawn_agent(self.host)
        self.pid = self.popen.pid
        self.alive = True
        self.send(self.spec)

    def start_readers(self) -> None:
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        for raw in self.popen.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            try:
                obj = json.loads(text)
            except ValueError:
                obj = None
            if isinstance(obj, dict) and "type" in obj:
                message = parse_message(obj)
                if message is None:
                    self.inbox.put(Inbound("ignored", self.host, obj.get("type")))
                else:
                    self.inbox.put(Inbound("message", self.host, message))
            else:
                self.inbox.put(Inbound("text", self.host, text))
        self.inbox.put(Inbound("eof", self.host, self.popen.wait()))

    def _read_stderr(self) -> None:
        assert self.popen is not None and self.popen.stderr is not None
        for raw in self.popen.stderr:
            self.inbox.put(Inbound("stderr", self.host, raw.decode("utf-8", "replace").rstrip("\r\n")))

    def send(self, message: AgentSpec | Wire) -> None:
        """Write the spec or one command to the agent; a gone agent is noticed by its reader.
        (ASCII JSON: a value that is not valid UTF-8, an environment variable's, say, keeps
        its bytes through the escapes.)"""
        if self.popen is None or self.popen.stdin is None:
            return
        with self._lock:
            try:
                self.popen.stdin.write((json.dumps(message.to_dict()) + "\n").encode())
                self.popen.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass

    def kill(self) -> None:
        """SIGKILL the agent (its processes then die by their PR_SET_PDEATHSIG)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()


def agent_spec(plan: LaunchPlan, host: str, options: SupervisorConfig,
               process: Callable[[ProcessSpec], Mapping[str, Any]] = ProcessSpec.to_dict) -> AgentSpec:
    """The spec a node agent gets for ``host``'s processes of ``plan`` (``process``: how each
    is written; a standby's workers wait for ``go``)."""
    return AgentSpec(host=host, processes=tuple(process(p) for p in plan.processes_on(host)),
                     grace=options.grace, heartbeat=options.heartbeat_timeout)


def beat(agents: Iterable[AgentHandle]) -> None:
    """Tell every live agent that the launcher is alive (``Beat``)."""
    for agent in agents:
        if agent.alive:
            agent.send(Beat())
