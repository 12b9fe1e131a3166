"""The node agent: owns the processes of one host for the whole run.

``python -m launcher.agent`` (this module, through ``__main__``) is started by the launcher:
locally as a subprocess, over SSH in a channel, under Slurm as an srun step. It speaks JSON
lines, one object per line: the agent protocol of ``wrn.contract``.

stdin, first line: the spec ::

    {"version": 1, "grace": 3.0,
     "processes": [{"name": "rank0", "rank": 0, "role": "worker", "argv": [...],
                    "env": {...added...}, "unset": [...], "cwd": "/abs", "log": "logs/h-rank0.log",
                    "cpus": [0, 1] or null}, ...]}

stdin, later lines: commands ::

    {"cmd": "stop", "grace": 3}      stop every process (SIGTERM to its group, then SIGKILL)
    {"cmd": "stacks", "timeout": 2}  every running worker's Python stacks (``wrn.stacks``)
    {"cmd": "beat"}                  the launcher is alive (sent every ``heartbeat`` / 5 s)
    {"cmd": "go"}                    every standby process may go on: ``go`` is written to its
                                     stdin, which is then closed (``launcher.supervise.standby``)

A process with ``"standby": true`` in the spec gets a pipe from the agent as its stdin (every
other one gets /dev/null); closing it unread (a stop) tells the process it is not needed.

stdout: messages ::

    {"type": "hello", "host": "h1", "pid": 123, "version": 1}
    {"type": "started", "name": "rank0", "rank": 0, "pid": 124, "pgid": 124, "time": ...}
    {"type": "line", "name": "rank0", "rank": 0, "line": "..."}      one per output line
    {"type": "exited", "name": "rank0", "rank": 0, "pid": 124, "exit_code": -9,
     "signal": "SIGKILL", "time": ...}                                after its last line
    {"type": "exited", ..., "pid": null, "exit_code": 127, "error": "..."}  could not start
    {"type": "stopping", "reason": "...", "grace": 3.0}
    {"type": "warning", "message": "..."}
    {"type": "stacks", "name": "rank0", "rank": 0, "pid": 124, "position": "...",
     "stacks": "...", "process": "state S (sleeping), wchan ...", "error": null}  one per worker
    {"type": "stacks_done", "count": 2}                               after the last of them
    {"type": "done"}                                                  last message

Stacks: each worker gets ``WRN_STACKS_FILE``, a file of its own in a private temporary folder
(removed when the agent ends), where ``wrn.stacks`` keeps its position and appends its stacks
on ``STACKS_SIGNAL``. On ``stacks`` the agent signals every running worker whose file shows the
handler in place, waits up to ``timeout`` seconds for what each appends, and sends it with the
worker's process state from /proc (a worker in uninterruptible sleep answers nothing, and the
state says so). This runs in a thread of its own: supervision goes on meanwhile.

Lifetime rules:

* Each process runs in its own process group (stdout and stderr merged into one pipe that the
  agent reads line by line), with PR_SET_PDEATHSIG(SIGKILL) so that it dies with the agent
  even if the agent is SIGKILLed. The agent spawns from its main thread only: the death signal
  follows the forking *thread*, and the main thread lives as long as the agent.
* When a process exits, the rest of its group (e.g. data-loader children) is SIGKILLed before
  the exit is reaped, so no grandchild lingers; the group id cannot be reused before reaping.
* stdin closing (the launcher is gone), SIGTERM or SIGHUP: stop everything (SIGTERM to each
  group, ``grace`` seconds, then SIGKILL) and exit. SIGINT is ignored: the launcher decides.
* No line from the launcher for the spec's ``heartbeat`` seconds (a stopped or hung launcher,
  a network partition that TCP has not noticed): the channel is abandoned (nothing more is
  written to it, so a full pipe cannot block the agent) and everything is stopped as above.
* Only the recorded process groups are ever signalled, never processes found by name.
* The agent exits 0 after ``done`` once all its processes have ended.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from launcher.agent.proc import child_preexec, describe_exit, has_exited, kill_group, pdeathsig_prefix, set_pdeathsig
from wrn.contract import (
    AGENT_PARENT_ENV,
    BIND_CPUS_ENV,
    STACKS_FILE_ENV,
    AgentSpec,
    AgentWarning,
    Beat,
    Done,
    Exited,
    Go,
    Hello,
    Line,
    Stacks,
    StacksDone,
    StacksRequest,
    Started,
    Stop,
    Stopping,
    Wire,
    parse_command,
)
from wrn.hostname import host_name
from wrn.stacks import HEADER_BYTES, MAGIC, STACKS_SIGNAL

POLL_S = 0.05
MAX_LINE = 64 * 1024
DRAIN_S = 2.0
#: A dump is complete once a worker's file has not grown for this long.
STACKS_SETTLE_S = 0.15
MAX_STACKS_BYTES = 256 * 1024


class _Out:
    """Thread-safe JSON-lines writer to the launcher; remembers when the launcher is gone."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.broken = False

    def send(self, message: Wire) -> None:
        if self.broken:  # checked before the lock: a writer blocked on a full pipe holds it
            return
        data = message.encode()
        with self._lock:
            if self.broken:
                return
            try:
                self._stream.write(data)
                self._stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.broken = True


class _Child:
    """One started process: its Popen, spec and output reader thread."""

    def __init__(self, spec: dict[str, Any], popen: subprocess.Popen) -> None:
        self.spec = spec
        self.popen = popen
        self.pgid = popen.pid  # setpgid(0, 0) in the child makes it the group leader
        self.reader: threading.Thread | None = None
        self.done = False
        self.stacks_file: str | None = None


def _spawn(proc: dict[str, Any], env: dict[str, str]) -> subprocess.Popen:
    """Start one process in its own process group, with the death signal set (see
    ``launcher.agent.proc``): through ``setpriv`` where the host has it (no Python code between fork
    and exec, so subprocess can vfork), else with a ``preexec_fn``. Its output (stdout and
    stderr merged) comes back on one pipe. A worker given WRN_BIND_CPUS binds itself after its
    cluster start-up; any other ``cpus`` are set here."""
    cpus = None if BIND_CPUS_ENV in env else proc.get("cpus")
    stdin = subprocess.PIPE if proc.get("standby") else subprocess.DEVNULL
    common = dict(cwd=proc.get("cwd") or None, env=env, stdin=stdin,
                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, close_fds=True)
    prefix = pdeathsig_prefix()
    if prefix is None:
        return subprocess.Popen(proc["argv"], preexec_fn=child_preexec(os.getpid(), cpus), **common)
    command = proc["argv"][0]
    if "/" in command and not os.path.isabs(command) and common["cwd"]:
        command = os.path.join(common["cwd"], command)  # relative to the child's cwd, as Popen
    if shutil.which(command, path=env.get("PATH")) is None:
        # say it as Popen would, rather than setpriv's exit status 127 later
        raise FileNotFoundError(2, "No such file or directory", proc["argv"][0])
    popen = subprocess.Popen([*prefix, *proc["argv"]], process_group=0, **common)
    if cpus:
        os.sched_setaffinity(popen.pid, cpus)  # before the program starts any thread of its own
    return popen


class Agent:
    """Starts the spec's processes, forwards their output and owns their lifetime."""

    def __init__(self, spec: AgentSpec, out: _Out) -> None:
        self.spec = spec
        self.out = out
        self.grace = spec.grace
        self.children: list[_Child] = []
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.kill_at: float | None = None
        self._signal: int | None = None
        self.stacks_dir: str | None = None
        self.heartbeat = spec.heartbeat  # 0: none
        self.last_heard = time.monotonic()

    # -- starting -----------------------------------------------------------------------------
    def start_all(self) -> None:
        """Spawn every process from the main thread, before any reader thread exists, then
        read them. (A child's death signal fires when the thread that forked it ends, and a
        ``preexec_fn`` is only safe while no other thread runs.) Spawning in several threads
        was measured no faster: 1,024 processes took 3.0-3.6 s either way on two cores."""
        base_env = dict(os.environ)
        procs = self.spec.processes
        self.children = [c for c in (self._start(p, base_env) for p in procs) if c is not None]
        for child in self.children:
            self._read(child)

    def _start(self, proc: dict[str, Any], base_env: dict[str, str]) -> _Child | None:
        """Start one process and say so (``started``, or ``exited`` 127 if it cannot start)."""
        env = dict(base_env)
        for key in proc.get("unset", []):
            env.pop(key, None)
        env.update(proc.get("env", {}))
        name, rank = proc["name"], proc.get("rank")
        stacks_file = self._stacks_file(proc)
        if stacks_file:
            env[STACKS_FILE_ENV] = stacks_file
        try:
            popen = _spawn(proc, env)
        except (OSError, subprocess.SubprocessError) as exc:
            self.out.send(Exited(name, rank, None, 127, None, f"cannot start {proc['argv'][0]}: "
                                                             f"{exc}", time.time()))
            return None
        child = _Child(proc, popen)
        child.stacks_file = stacks_file
        self.out.send(Started(name, rank, popen.pid, child.pgid, time.time()))
        return child

    def _stacks_file(self, proc: dict[str, Any]) -> str | None:
        """A new empty diagnostics file for a worker (None for the scheduler, or if the
        temporary folder cannot be made: the worker then just has none)."""
        if proc.get("role", "worker") != "worker":
            return None
        try:
            if self.stacks_dir is None:
                self.stacks_dir = tempfile.mkdtemp(prefix="wrn-agent-stacks-")
            path = os.path.join(self.stacks_dir, f"{proc['name']}.txt")
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
        except (OSError, KeyError, TypeError):
            return None
        return path

    def remove_stacks_dir(self) -> None:
        if self.stacks_dir is not None:
            shutil.rmtree(self.stacks_dir, ignore_errors=True)

    def dump_stacks(self, timeout: float) -> None:
        """Send every running worker's stacks (see the module docstring), then ``stacks_done``."""
        sent, pending = 0, {}
        for child in self.children:
            if child.done or child.spec.get("role", "worker") != "worker":
                continue
            header, size = _read_header(child.stacks_file)
            if header is None:
                self._send_stacks(child, "", "", "no stacks handler in this process (it has none, "
                                                 "or it has not registered one yet)")
                sent += 1
                continue
            try:
                os.kill(child.popen.pid, STACKS_SIGNAL)
            except OSError as exc:
                self._send_stacks(child, header, "", f"cannot signal it: {exc.strerror}")
                sent += 1
                continue
            pending[child.spec["name"]] = (child, header, size)
        deadline = time.monotonic() + timeout
        sizes: dict[str, tuple[int, float]] = {}
        while pending:
            now = time.monotonic()
            for name, (child, header, start) in list(pending.items()):
                size = _size(child.stacks_file)
                last = sizes.get(name)
                if size != (last[0] if last else start):
                    sizes[name] = (size, now)
                    continue
                settled = last is not None and now - last[1] >= STACKS_SETTLE_S
                if settled or now >= deadline:
                    del pending[name]
                    text = _read_from(child.stacks_file, start)
                    self._send_stacks(child, header, text, None if text else
                                      f"no stacks within {timeout:g} s (the process did not run "
                                      f"its signal handler; see its state)")
                    sent += 1
            time.sleep(0.02)
        self.out.send(StacksDone(count=sent))

    def _send_stacks(self, child: _Child, header: str, stacks: str, error: str | None) -> None:
        self.out.send(Stacks(child.spec["name"], child.spec.get("rank"), child.popen.pid, header,
                             stacks, _proc_state(child.popen.pid), error))

    def _read(self, child: _Child) -> None:
        child.reader = threading.Thread(target=self._forward, args=(child,), daemon=True)
        child.reader.start()

    def _forward(self, child: _Child) -> None:
        name, rank = child.spec["name"], child.spec.get("rank")
        stream = child.popen.stdout
        assert stream is not None
        while True:
            raw = stream.readline(MAX_LINE)
            if not raw:
                break
            self.out.send(Line(name, rank, raw.decode("utf-8", "replace").rstrip("\r\n")))

    # -- commands and signals -----------------------------------------------------------------
    def read_commands(self, stream: BinaryIO) -> None:
        """stdin reader thread: queue each command; EOF means the launcher is gone."""
        self.last_heard = time.monotonic()  # the start-up of many processes is not silence
        for raw in iter(stream.readline, b""):
            self.last_heard = time.monotonic()
            try:
                cmd = json.loads(raw)
            except ValueError:
                cmd = {"cmd": "?", "raw": raw.decode("utf-8", "replace").strip()}
            self.commands.put(cmd if isinstance(cmd, dict) else {"cmd": "?", "raw": str(cmd)})
        self.commands.put({"cmd": "stop", "reason": "launcher connection closed (stdin EOF)"})

    def on_signal(self, signum: int, _frame: Any) -> None:
        self._signal = signum  # acted on by the main loop; nothing else is safe in a handler

    def release_standby(self, line: bytes) -> None:
        """Write ``line`` to every standby process's stdin and close it (empty: just close)."""
        for child in self.children:
            pipe, child.popen.stdin = child.popen.stdin, None
            if pipe is None:
                continue
            try:
                if line:
                    pipe.write(line)
            except OSError:  # it has ended: its exit is reported as usual
                pass
            finally:
                try:
                    pipe.close()
                except OSError:
                    pass

    def stop(self, grace: float, reason: str) -> None:
        """SIGTERM every live process group now, SIGKILL them after ``grace`` seconds."""
        deadline = time.monotonic() + max(0.0, grace)
        if self.kill_at is not None and self.kill_at <= deadline:
            return  # already stopping, and at least as urgently
        first = self.kill_at is None
        self.kill_at = deadline
        self.out.send(Stopping(reason=reason, grace=grace))
        if first:
            self.release_standby(b"")
            for child in self.children:
                if not child.done:
                    kill_group(child.pgid, signal.SIGTERM)

    # -- main loop ------------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until every process has ended; returns the agent's exit status."""
        while any(not c.done for c in self.children):
            try:
                cmd = self.commands.get(timeout=POLL_S)
            except queue.Empty:
                cmd = None
            if cmd is not None:
                self._handle(cmd)
            if self._signal is not None:
                name = signal.Signals(self._signal).name
                self._signal = None
                self.stop(self.grace, f"agent received {name}")
            if self.out.broken:
                self.stop(self.grace, "launcher connection closed (stdout)")
            elif self.heartbeat and time.monotonic() - self.last_heard > self.heartbeat:
                self.out.broken = True  # the launcher does not read either: write nothing more
                self.stop(self.grace, f"no heartbeat from the launcher for {self.heartbeat:g} s")
            self._reap()
            if self.kill_at is not None and time.monotonic() >= self.kill_at:
                for child in self.children:
                    if not child.done:
                        kill_group(child.pgid, signal.SIGKILL)
        self.out.send(Done())
        return 0

    def _handle(self, raw: dict[str, Any]) -> None:
        cmd = parse_command(raw)
        if isinstance(cmd, Beat):
            return
        if isinstance(cmd, Stop):
            self.stop(self.grace if cmd.grace is None else cmd.grace,
                      cmd.reason or "stop requested by the launcher")
        elif isinstance(cmd, StacksRequest):
            ok = cmd.timeout is not None and 0 < cmd.timeout < 3600
            seconds = min(max(cmd.timeout, 0.1), 30.0) if ok else 2.0
            threading.Thread(target=self.dump_stacks, args=(seconds,), daemon=True).start()
        elif isinstance(cmd, Go):
            self.release_standby(b"go\n")
        else:
            self.out.send(AgentWarning(f"unknown command ignored: {raw}"))

    def _reap(self) -> None:
        for child in self.children:
            if child.done or not has_exited(child.popen.pid):
                continue
            # Sweep the rest of the group (e.g. data-loader children) while the leader is an
            # unreaped zombie, then reap it, so the pgid we signal is certainly still ours.
            kill_group(child.pgid, signal.SIGKILL)
            code, sig = describe_exit(child.popen.wait())
            if child.reader is not None:
                child.reader.join(DRAIN_S)  # forward its last lines before reporting the exit
            child.done = True
            self.out.send(Exited(child.spec["name"], child.spec.get("rank"), child.popen.pid,
                                 code, sig, None, time.time()))


def _size(path: str | None) -> int:
    try:
        return os.stat(path).st_size if path else 0
    except OSError:
        return 0


def _read_header(path: str | None) -> tuple[str | None, int]:
    """(the position line, the file's size) when the worker's stacks handler is in place."""
    try:
        with open(path or "", "rb") as fh:
            head = fh.read(HEADER_BYTES)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None, 0
    if not head.startswith(MAGIC):
        return None, size
    return head[len(MAGIC):].decode("utf-8", "replace").strip(), size


def _read_from(path: str | None, offset: int) -> str:
    try:
        with open(path or "", "rb") as fh:
            fh.seek(offset)
            return fh.read(MAX_STACKS_BYTES).decode("utf-8", "replace")
    except OSError:
        return ""


def _proc_state(pid: int) -> str:
    """``state S (sleeping), wchan do_epoll_wait`` from /proc (empty where unreadable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state = stat[stat.rindex(")") + 2:].split()[0]
    except (OSError, ValueError, IndexError):
        return ""
    names = {"R": "running", "S": "sleeping", "D": "uninterruptible sleep (often I/O or a "
             "file system)", "T": "stopped", "t": "traced", "Z": "zombie"}
    text = f"state {state} ({names.get(state, '?')})"
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text().strip()
    except OSError:
        wchan = ""
    return text + (f", wchan {wchan}" if wchan and wchan != "0" else "")


def main() -> int:
    """Entry point of ``python -m launcher.agent``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Our own stdout is the protocol channel: keep stray prints of imported code off it.
    sys.stdout = sys.stderr
    out = _Out(stdout)
    # If the launcher dies, we get SIGTERM and stop our groups gracefully (stdin EOF says the
    # same, but a signal also works when stdin is held open by someone else). A launcher that
    # died before the prctl() would never send it: then we are already orphaned, and stop.
    set_pdeathsig(signal.SIGTERM)
    parent = os.environ.pop(AGENT_PARENT_ENV, "")
    if parent.isdigit() and int(parent) != os.getppid():
        return 1
    line = stdin.readline()
    if not line:
        return 0
    try:
        spec = AgentSpec.read(json.loads(line))
    except ValueError as exc:
        out.send(AgentWarning(f"bad spec: {exc}"))
        out.send(Done())
        return 2
    agent = Agent(spec, out)
    out.send(Hello(spec.host or host_name(), os.getpid()))
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, agent.on_signal)
    agent.start_all()
    threading.Thread(target=agent.read_commands, args=(stdin,), daemon=True).start()
    try:
        return agent.run()
    finally:
        agent.remove_stacks_dir()

