"""The contract between the launcher, its node agents and the training workers, in one place.

Standard library only: the worker (``wrn.train``), the node agent (``launcher.agent``) and the
launcher (``cluster.plan``, ``launcher``) all import it, and the agent and a local dry run must
not pay for numpy or MindSpore. Three parts:

* **Environment**: every variable the launcher sets for a process and the process reads.
  MindSpore's and HCCL's own names come first (a worker started by msrun, or by hand with the
  same variables, runs the same), then the project's ``WRN_*`` names.
* **Events**: the structured lines a worker writes on its stdout, interleaved with plain log
  text: ``@wrn {"v":1,"event":"step","rank":0,"time":...,"epoch":1,...}``. One class per event
  type; the worker builds one and ``emit`` writes it, the launcher reads a line back with
  ``parse_record`` (the JSON object, as ``metrics.jsonl`` stores it) and ``event_from`` (the
  typed event). Reading is lenient: a field of the wrong type reads as None, fields not in the
  class are kept in ``extra``, a broken line is plain text; a worker's log never crashes its
  reader.
* **Agent protocol**: JSON lines between the launcher and a node agent. The launcher writes an
  ``AgentSpec`` as the first line of the agent's stdin, then commands (``Stop``,
  ``StacksRequest``, ``Beat``, ``Go``); the agent answers with messages (``Hello``, ``Started``,
  ``Line``, ``Exited``, ``Stopping``, ``AgentWarning``, ``Stacks``, ``StacksDone``, ``Done``).
  Both ends build and read the same classes; ``parse_message`` and ``parse_command`` turn a JSON
  object back into one (None for an unknown type).

The classes are plain dataclasses, treated as values but not frozen: every worker and node agent
imports this module, and frozen ones cost twice the import time (measured: about 30 ms against
55-70 ms for the 25 classes on the 2-core test machine).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TextIO

# -- environment ---------------------------------------------------------------------------------
# MindSpore's dynamic cluster (set by cluster.plan, read by wrn.dist and MindSpore itself)
MS_ROLE_ENV = "MS_ROLE"                  # MS_SCHED or MS_WORKER
MS_SCHED_HOST_ENV = "MS_SCHED_HOST"
MS_SCHED_PORT_ENV = "MS_SCHED_PORT"
MS_WORKER_NUM_ENV = "MS_WORKER_NUM"
MS_NODE_ID_ENV = "MS_NODE_ID"
ROLE_SCHEDULER = "MS_SCHED"
ROLE_WORKER = "MS_WORKER"
# ranks and devices, as ModelZoo scripts and HCCL know them
RANK_ID_ENV = "RANK_ID"
RANK_SIZE_ENV = "RANK_SIZE"
LOCAL_RANK_ENV = "LOCAL_RANK"
DEVICE_ID_ENV = "DEVICE_ID"
RANK_TABLE_FILE_ENV = "RANK_TABLE_FILE"

# the project's own
#: The run directory (set for every process of a launch).
RUN_DIR_ENV = "WRN_RUN_DIR"
#: The worker's thread budget (the launcher's share of the cores; also OMP_NUM_THREADS).
NUM_THREADS_ENV = "WRN_NUM_THREADS"
#: The cores a worker pins its threads to once its cluster start-up is over ("0,1,2").
BIND_CPUS_ENV = "WRN_BIND_CPUS"
#: "1": keep MindSpore's WARNING logs (otherwise GLOG_v=3).
VERBOSE_MINDSPORE_ENV = "WRN_VERBOSE_MINDSPORE"
#: oneDNN's instruction set for the worker (``default`` leaves oneDNN's own choice); set by users.
ONEDNN_ISA_ENV = "WRN_ONEDNN_ISA"
#: Where the built-in sample dataset is generated (``wrn.synth``); set by users, read by both ends.
DATA_HOME_ENV = "WRN_DATA_HOME"
#: "1" (Slurm launches): SIGTERM/SIGUSR1 stop every rank after the same step, with a checkpoint.
STOP_ON_SIGNAL_ENV = "WRN_STOP_ON_SIGNAL"
#: "1": a standby worker: set up, join, say ``standby`` and wait for ``go`` on stdin.
STANDBY_ENV = "WRN_STANDBY"
#: Fault injection, a testing aid (``wrn.faults``): ``hang:rank=1:step=5`` and the like.
FAULT_ENV = "WRN_FAULT"
#: The attempt number of run.json (1-based), in every process's environment.
ATTEMPT_ENV = "WRN_ATTEMPT"
#: The worker's diagnostics file (position and stacks, ``wrn.stacks``); set by the agent.
STACKS_FILE_ENV = "WRN_STACKS_FILE"
#: A local agent's launcher pid (set by the local backend, read by the agent).
AGENT_PARENT_ENV = "WRN_AGENT_PARENT"


# -- readers of untrusted fields -----------------------------------------------------------------
def number(value: Any) -> float | None:
    """A finite number from an event field as a float; None for anything else (missing,
    ``true``, a string such as ``"nan"``, infinity). The one reader of numeric fields."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def whole(value: Any) -> int | None:
    """An integer field as an int; None for anything else (``true``, 2.0, a string)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text(value: Any) -> str | None:
    """A string field; None for anything else."""
    return value if isinstance(value, str) else None


def _raw(value: Any) -> Any:
    return value


_READERS = {"int": whole, "float": number, "str": text}


def _reader(annotation: str):
    """The lenient reader of a field annotated ``annotation``: ``int | None`` -> ``whole``,
    ``float | None`` -> ``number``, ``str | None`` -> ``text``; a plain ``str`` (a process's
    name) is whatever came, as text."""
    if annotation == "str":
        return str
    return _READERS.get(annotation.split("|")[0].strip(), _raw)


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: numpy scalars to Python, NaN/inf to strings."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# -- events (worker -> launcher) -----------------------------------------------------------------
PREFIX = "@wrn "
VERSION = 1


@dataclass
class Event:
    """Fields every event has. Every field the class names is written (None as null, as a
    reader of metrics.jsonl has always seen it); ``extra`` holds fields the class does not
    name (written as they are, read back into ``extra``)."""

    kind: ClassVar[str] = ""
    rank: int | None = None
    time: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, rank: int, **fields: Any) -> Event:
        """An event of ``rank`` from keyword fields: those the class names are set, the others
        go into ``extra`` (a worker's evaluation result carries per-rank counts, say)."""
        names = {f.name for f in dataclasses.fields(cls)} - _BASE_FIELDS
        return cls(rank=rank, **{k: v for k, v in fields.items() if k in names},
                   extra={k: v for k, v in fields.items() if k not in names})

    def fields(self) -> dict[str, Any]:
        """The event's own fields (not v, event, rank, time), as they are written."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in _BASE_FIELDS}
        return {**out, **self.extra}

    def record(self) -> dict[str, Any]:
        """The JSON object of the event line (``time`` now when not set)."""
        return {"v": VERSION, "event": self.kind, "rank": self.rank,
                "time": self.time if self.time is not None else round(time.time(), 3),
                **_clean(self.fields())}


_BASE_FIELDS = frozenset({"rank", "time", "extra"})


@dataclass
class Start(Event):
    """Training begins: what runs, and how long the set-up took. ``sink_size``: steps per
    data-sinking call (0: one Python call per step)."""

    kind: ClassVar[str] = "start"
    world_size: int | None = None
    model: str | None = None
    params: int | None = None
    steps_per_epoch: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    device_target: str | None = None
    amp_level: str | None = None
    host: str | None = None
    pid: int | None = None
    train_images: int | None = None
    test_images: int | None = None
    start_epoch: int | None = None
    start_step: int | None = None
    threads: int | None = None
    resumed_from: str | None = None
    setup_seconds: float | None = None
    sink_size: int | None = None


@dataclass
class Step(Event):
    """Progress: every log_interval steps, an epoch's last step, and the process's first step
    (which ends its start-up for the launcher's stall check); with data sinking at the first
    sink boundary at or after each. ``imgs_per_s`` is this rank's; ``data_wait_s`` the mean
    seconds per step waiting for data; ``step_s`` the mean seconds per step inside the train
    step (computation plus the wait for the other ranks in the gradient AllReduce)."""

    kind: ClassVar[str] = "step"
    epoch: int | None = None
    step: int | None = None
    steps_per_epoch: int | None = None
    global_step: int | None = None
    loss: float | None = None
    lr: float | None = None
    imgs_per_s: float | None = None
    data_wait_s: float | None = None
    step_s: float | None = None


@dataclass
class EpochEnd(Event):
    """An epoch is done: mean loss, seconds, throughput, peak resident memory so far."""

    kind: ClassVar[str] = "epoch_end"
    epoch: int | None = None
    loss: float | None = None
    seconds: float | None = None
    steps: int | None = None
    imgs_per_s: float | None = None
    data_wait_s: float | None = None
    max_rss_mib: float | None = None


@dataclass
class Eval(Event):
    """An evaluation (rank 0's, counts summed over every rank)."""

    kind: ClassVar[str] = "eval"
    epoch: int | None = None
    top1: float | None = None
    correct: int | None = None
    total: int | None = None
    loss: float | None = None


@dataclass
class Checkpoint(Event):
    """Rank 0 wrote a checkpoint."""

    kind: ClassVar[str] = "checkpoint"
    epoch: int | None = None
    step: int | None = None
    global_step: int | None = None
    path: str | None = None


@dataclass
class Finish(Event):
    """The rank is done: ``status`` "ok", the checksum of its parameters, the final top-1."""

    kind: ClassVar[str] = "finish"
    status: str | None = None
    checksum: Any = None
    top1: float | None = None
    seconds: float | None = None
    global_step: int | None = None
    max_rss_mib: float | None = None


@dataclass
class Error(Event):
    """The rank failed: the message and the exception type."""

    kind: ClassVar[str] = "error"
    message: str | None = None
    error_kind: str | None = None

    def fields(self) -> dict[str, Any]:
        return {"message": self.message, "kind": self.error_kind, **self.extra}


@dataclass
class WarningEvent(Event):
    """Something worth a look; free-form extra fields (e.g. ``skipped_files``) in ``extra``."""

    kind: ClassVar[str] = "warning"
    message: str | None = None


@dataclass
class StandbyReady(Event):
    """A standby worker (``WRN_STANDBY=1``) has joined its cluster, built its model, and waits
    for ``go`` on stdin (``wrn.train.wait_as_standby``)."""

    kind: ClassVar[str] = "standby"
    setup_seconds: float | None = None


#: Every event type by its name on the wire.
EVENT_TYPES: dict[str, type[Event]] = {cls.kind: cls for cls in (
    Start, Step, EpochEnd, Eval, Checkpoint, Finish, Error, WarningEvent, StandbyReady)}
#: The event names, for readers that only need to know one when they see it.
EVENTS = frozenset(EVENT_TYPES)


def format_event(event: Event) -> str:
    """The event line (without newline); ``ValueError`` for an event of no known type."""
    if EVENT_TYPES.get(event.kind) is not type(event):
        raise ValueError(f"unknown event {event.kind!r}; known: {sorted(EVENT_TYPES)}")
    return PREFIX + json.dumps(event.record(), ensure_ascii=False, separators=(",", ":"))


def emit(event: Event, stream: TextIO | None = None) -> None:
    """Write one event line to ``stream`` (stdout by default) and flush it at once."""
    out = stream if stream is not None else sys.stdout
    out.write(format_event(event) + "\n")
    out.flush()


def parse_record(line: str) -> dict[str, Any] | None:
    """The JSON object of an event line, or None for plain log text (also a line with the prefix
    that is broken JSON or names no known event)."""
    if not line.startswith(PREFIX):
        return None
    try:
        record = json.loads(line[len(PREFIX):])
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("event"), str) \
            or record["event"] not in EVENT_TYPES:
        return None
    return record


def event_from(record: Mapping[str, Any]) -> Event | None:
    """The typed event of a JSON object (a parsed line, a row of metrics.jsonl); None when it
    names no known event. Fields of the wrong type read as None."""
    cls = EVENT_TYPES.get(record.get("event")) if isinstance(record.get("event"), str) else None
    if cls is None:
        return None
    names = _FIELDS[cls]
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in record.items():
        if key in ("v", "event"):
            continue
        if cls is Error and key == "kind":
            values["error_kind"] = text(value)
        elif key in names:
            values[key] = names[key](value)
        else:
            extra[key] = value
    return cls(**values, extra=extra)


def parse_event(line: str) -> Event | None:
    """The typed event of an event line; None for plain log text."""
    record = parse_record(line)
    return event_from(record) if record is not None else None


_FIELDS = {cls: {f.name: _reader(str(f.type)) for f in dataclasses.fields(cls) if f.name != "extra"}
           for cls in EVENT_TYPES.values()}


# -- agent protocol ------------------------------------------------------------------------------
PROTOCOL_VERSION = 1


@dataclass
class Wire:
    """A message of the agent protocol: ``to_dict`` writes it with its ``type`` (a message) or
    ``cmd`` (a command); ``read`` builds one back from a JSON object, leniently."""

    tag: ClassVar[str] = ""
    key: ClassVar[str] = "type"

    def to_dict(self) -> dict[str, Any]:
        return {self.key: self.tag, **{name: getattr(self, name) for name, _ in _wire_fields(type(self))}}

    @classmethod
    def read(cls, obj: Mapping[str, Any]) -> Wire:
        return cls(**{name: read(obj.get(name)) for name, read in _wire_fields(cls)})

    def encode(self) -> bytes:
        """One JSON line, as it goes over the pipe."""
        return (json.dumps(self.to_dict(), ensure_ascii=False) + "\n").encode("utf-8", "replace")


@functools.cache
def _wire_fields(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, lenient reader) of each field of a message class, looked up once per class (the
    agent writes one message per output line of every process)."""
    return tuple((f.name, _reader(str(f.type))) for f in dataclasses.fields(cls))


# agent -> launcher
@dataclass
class Hello(Wire):
    """The agent is up: its host and its pid there."""

    tag: ClassVar[str] = "hello"
    host: str | None = None
    pid: int | None = None
    version: int | None = field(default=PROTOCOL_VERSION, compare=False)


@dataclass
class Started(Wire):
    """A process started (its pid is its process group's id)."""

    tag: ClassVar[str] = "started"
    name: str = ""
    rank: int | None = None
    pid: int | None = None
    pgid: int | None = None
    time: float | None = None


@dataclass
class Line(Wire):
    """One output line of a process (stdout and stderr merged)."""

    tag: ClassVar[str] = "line"
    name: str = ""
    rank: int | None = None
    line: str = ""

    @classmethod
    def read(cls, obj: Mapping[str, Any]) -> Line:
        return cls(str(obj.get("name")), whole(obj.get("rank")), str(obj.get("line", "")))


@dataclass
class Exited(Wire):
    """A process ended (after its last line), or could not start (``pid`` None, ``error``)."""

    tag: ClassVar[str] = "exited"
    name: str = ""
    rank: int | None = None
    pid: int | None = None
    exit_code: int | None = None
    signal: str | None = None
    error: str | None = None
    time: float | None = None


@dataclass
class Stopping(Wire):
    """The agent is stopping its processes."""

    tag: ClassVar[str] = "stopping"
    reason: str | None = None
    grace: float | None = None


@dataclass
class AgentWarning(Wire):
    tag: ClassVar[str] = "warning"
    message: str = ""

    @classmethod
    def read(cls, obj: Mapping[str, Any]) -> AgentWarning:
        return cls(str(obj.get("message")))


@dataclass
class Stacks(Wire):
    """One worker's answer to ``stacks``: its position line (``wrn.stacks``), the Python
    stacks it wrote, its process state, or why there are none (``error``)."""

    tag: ClassVar[str] = "stacks"
    name: str = ""
    rank: int | None = None
    pid: int | None = None
    position: str = ""
    stacks: str = ""
    process: str = ""
    error: str | None = None

    @classmethod
    def read(cls, obj: Mapping[str, Any]) -> Stacks:
        return cls(str(obj.get("name")), whole(obj.get("rank")), whole(obj.get("pid")),
                   text(obj.get("position")) or "", text(obj.get("stacks")) or "",
                   text(obj.get("process")) or "", text(obj.get("error")))


@dataclass
class StacksDone(Wire):
    """Every running worker's stacks were sent."""

    tag: ClassVar[str] = "stacks_done"
    count: int | None = None


@dataclass
class Done(Wire):
    """The agent's last message."""

    tag: ClassVar[str] = "done"


MESSAGE_TYPES: dict[str, type[Wire]] = {cls.tag: cls for cls in (
    Hello, Started, Line, Exited, Stopping, AgentWarning, Stacks, StacksDone, Done)}


def parse_message(obj: Mapping[str, Any]) -> Wire | None:
    """The typed message of an agent's JSON object; None for a type not in ``MESSAGE_TYPES``."""
    tag = obj.get("type")
    cls = MESSAGE_TYPES.get(tag) if isinstance(tag, str) else None
    return cls.read(obj) if cls is not None else None


# launcher -> agent
@dataclass
class AgentSpec:
    """The first line an agent reads: its host's processes (``cluster.plan.ProcessSpec`` as a
    dict: name, rank, role, argv, env, unset, cwd, log, cpus; ``"standby": true`` gives the
    process a stdin pipe for ``go``), the grace period of a stop, and the heartbeat timeout
    (0: none)."""

    host: str
    processes: tuple[Mapping[str, Any], ...]
    grace: float = 3.0
    heartbeat: float = 0.0
    version: int = PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "host": self.host, "grace": self.grace,
                "heartbeat": self.heartbeat, "processes": [dict(p) for p in self.processes]}

    @classmethod
    def read(cls, obj: Any) -> AgentSpec:
        """The spec of a JSON object; ``ValueError`` when it is not one."""
        if not isinstance(obj, dict) or not isinstance(obj.get("processes"), list):
            raise ValueError("the spec must be an object with a 'processes' list")
        return cls(host=text(obj.get("host")) or "", processes=tuple(obj["processes"]),
                   grace=number(obj.get("grace")) if number(obj.get("grace")) is not None else 3.0,
                   heartbeat=number(obj.get("heartbeat")) or 0.0)


@dataclass
class Stop(Wire):
    """Stop every process: SIGTERM to its group, SIGKILL after ``grace`` seconds."""

    tag: ClassVar[str] = "stop"
    key: ClassVar[str] = "cmd"
    grace: float | None = None
    reason: str | None = None


@dataclass
class StacksRequest(Wire):
    """Send every running worker's stacks, waiting at most ``timeout`` seconds for them."""

    tag: ClassVar[str] = "stacks"
    key: ClassVar[str] = "cmd"
    timeout: float | None = None


@dataclass
class Beat(Wire):
    """The launcher is alive (sent every heartbeat timeout / 5 seconds)."""

    tag: ClassVar[str] = "beat"
    key: ClassVar[str] = "cmd"


@dataclass
class Go(Wire):
    """Every standby process may go on: ``go`` is written to its stdin, which is then closed."""

    tag: ClassVar[str] = "go"
    key: ClassVar[str] = "cmd"


COMMAND_TYPES: dict[str, type[Wire]] = {cls.tag: cls for cls in (Stop, StacksRequest, Beat, Go)}


def parse_command(obj: Any) -> Wire | None:
    """The typed command of a JSON object the agent read; None for anything else."""
    tag = obj.get("cmd") if isinstance(obj, dict) else None
    cls = COMMAND_TYPES.get(tag) if isinstance(tag, str) else None
    return cls.read(obj) if cls is not None else None
