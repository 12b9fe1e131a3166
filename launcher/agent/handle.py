"""The launcher's end of the node-agent protocol: typed messages and one handle per agent.

An agent (``launcher.agent``) writes JSON lines on its stdout. ``AgentHandle`` reads them in two
threads (stdout, stderr) and puts what it reads on the monitor's queue as ``Inbound`` items:

* ``message``: a line that parses into one of the message types below (``MESSAGE_TYPES``);
* ``ignored``: a JSON object whose ``type`` the launcher does not handle (logged at debug
  level by the monitor, never dispatched);
* ``text`` / ``stderr``: anything else the agent printed (kept in the agent's log);
* ``eof``: the agent's stdout closed (the agent ended; ``value`` is its exit status).

Message types (agent -> launcher)::

    hello    {host, pid, version}               the agent is up (its pid there)
    started  {name, rank, pid, pgid, time}      a process started
    line     {name, rank, line}                 one output line of a process
    exited   {name, rank, pid, exit_code, signal, error, time}
    stopping {reason, grace}                    the agent is stopping its processes
    warning  {message}
    stacks   {name, rank, pid, position, stacks, process, error}   one worker's stacks
    stacks_done {count}                         every running worker's stacks were sent
    done     {}                                 the agent's last message

Commands (launcher -> agent): the spec as the first line, then ``{"cmd": "stop", "grace": G}``,
``{"cmd": "stacks", "timeout": T}``, ``{"cmd": "beat"}`` and ``{"cmd": "go"}`` (a standby's
workers go on; see ``launcher.agent`` and ``launcher.supervise.standby``).
"""

from __future__ import annotations

import collections
import json
import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from launcher.backends.base import Backend
from wrn.events import number, text, whole

TAIL_LINES = 20


@dataclass(frozen=True)
class Hello:
    host: str | None
    pid: int | None


@dataclass(frozen=True)
class Started:
    name: str
    rank: int | None
    pid: int | None
    pgid: int | None
    time: float | None


@dataclass(frozen=True)
class Line:
    name: str
    rank: int | None
    line: str


@dataclass(frozen=True)
class Exited:
    name: str
    rank: int | None
    pid: int | None
    exit_code: int | None
    signal: str | None
    error: str | None
    time: float | None


@dataclass(frozen=True)
class Stopping:
    reason: str | None
    grace: float | None


@dataclass(frozen=True)
class AgentWarning:
    message: str


@dataclass(frozen=True)
class Done:
    pass


@dataclass(frozen=True)
class Stacks:
    """One worker's answer to ``stacks``: its position line (``wrn.stacks``), the Python
    stacks it wrote, its process state, or why there are none (``error``)."""

    name: str
    rank: int | None
    pid: int | None
    position: str
    stacks: str
    process: str
    error: str | None


@dataclass(frozen=True)
class StacksDone:
    count: int | None


def _stacks(m: Mapping[str, Any]) -> Stacks:
    return Stacks(str(m.get("name")), whole(m.get("rank")), whole(m.get("pid")),
                  text(m.get("position")) or "", text(m.get("stacks")) or "",
                  text(m.get("process")) or "", text(m.get("error")))


def _hello(m: Mapping[str, Any]) -> Hello:
    return Hello(text(m.get("host")), whole(m.get("pid")))


def _started(m: Mapping[str, Any]) -> Started:
    return Started(str(m.get("name")), whole(m.get("rank")), whole(m.get("pid")), whole(m.get("pgid")),
                   number(m.get("time")))


def _line(m: Mapping[str, Any]) -> Line:
    return Line(str(m.get("name")), whole(m.get("rank")), str(m.get("line", "")))


def _exited(m: Mapping[str, Any]) -> Exited:
    return Exited(str(m.get("name")), whole(m.get("rank")), whole(m.get("pid")),
                  whole(m.get("exit_code")), text(m.get("signal")), text(m.get("error")),
                  number(m.get("time")))


#: The message types the launcher handles, by their ``type`` field; nothing else is dispatched.
MESSAGE_TYPES = {
    "hello": _hello,
    "started": _started,
    "line": _line,
    "exited": _exited,
    "stopping": lambda m: Stopping(text(m.get("reason")), number(m.get("grace"))),
    "warning": lambda m: AgentWarning(str(m.get("message"))),
    "done": lambda m: Done(),
    "stacks": _stacks,
    "stacks_done": lambda m: StacksDone(whole(m.get("count"))),
}


def parse_message(obj: Mapping[str, Any]) -> Any | None:
    """The typed message for an agent's JSON object, or None for a type not in ``MESSAGE_TYPES``."""
    build = MESSAGE_TYPES.get(obj.get("type")) if isinstance(obj.get("type"), str) else None
    return build(obj) if build is not None else None


@dataclass(frozen=True)
class Inbound:
    """One item from an agent's streams, as queued for the monitor."""

    kind: str          # "message", "ignored", "text", "stderr", "eof"
    host: str
    value: Any


class AgentHandle:
    """The launcher's end of one node agent: its process, its streams, its reader threads."""

    def __init__(self, host: str, backend: Backend, spec: dict[str, Any], inbox: queue.Queue) -> None:
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

    def send(self, message: dict[str, Any]) -> None:
        """Write one command line to the agent; a gone agent is noticed by its reader."""
        if self.popen is None or self.popen.stdin is None:
            return
        with self._lock:
            try:
                self.popen.stdin.write((json.dumps(message) + "\n").encode())
                self.popen.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass

    def kill(self) -> None:
        """SIGKILL the agent (its processes then die by their PR_SET_PDEATHSIG)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()


def beat(agents: Iterable[AgentHandle]) -> None:
    """Tell every live agent that the launcher is alive (``{"cmd": "beat"}``)."""
    for agent in agents:
        if agent.alive:
            agent.send({"cmd": "beat"})
