"""The supervisor: runs a plan through node agents and owns the run until its end.

One ``Supervisor`` per run. Its main thread starts one agent per host (``launcher.agent``,
reached through a ``Transport``), then handles, one at a time, everything that happens:

* agent messages (read by one thread per agent stream into a queue): process started/exited,
  output lines -> ``logs/<host>-rank<k>.log`` (plain text) or ``metrics.jsonl`` (events, parsed
  with ``wrn.events.parse``), progress -> the ``Renderer``;
* run.json rewritten on every change (pids as soon as known, exit codes as they come);
* first failure wins: a worker exiting non-zero or killed, the scheduler dying while workers
  run, a worker stalled past its allowance, or an agent lost -> that is the root cause; every
  other process is stopped (SIGTERM to its process group, ``grace`` seconds, SIGKILL) and what
  fails afterwards is not blamed;
* SIGINT/SIGTERM/SIGHUP -> the same clean stop, status "interrupted", exit 128+signal; a second
  SIGINT skips the grace period.

Exit status of a run: 0 succeeded, 1 failed, 128+N interrupted by signal N.
"""

from __future__ import annotations

import collections
import json
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cluster.plan import LaunchPlan, ProcessSpec
from launcher.formatting import exit_text
from launcher.proc import kill_group, signal_name
from launcher.progress import RootCause, RunProgress, RunSummary
from launcher.renderers import Renderer
from launcher.rundir import RunFiles, iso_time
from launcher.transport import Transport
from wrn.events import parse as parse_event

TAIL_LINES = 20
#: Extra seconds an agent gets beyond the grace period to report that its processes ended,
#: before the launcher kills the recorded process groups itself (local hosts only).
AGENT_STOP_SLACK_S = 5.0
LOOP_S = 0.1


@dataclass(frozen=True)
class SupervisorOptions:
    """Timing policy of a run; validated on construction."""

    grace: float = 3.0
    stall_timeout: float = 300.0
    stall_kill: float = 600.0
    startup_timeout: float = 600.0
    scheduler_wait: float = 15.0

    def __post_init__(self) -> None:
        from cluster.errors import PlanError
        if self.grace < 0:
            raise PlanError(f"--grace must be 0 or more seconds, got {self.grace}")
        if self.stall_timeout <= 0 or self.startup_timeout <= 0:
            raise PlanError("--stall-timeout and --startup-timeout must be more than 0 seconds")
        if self.stall_kill <= self.stall_timeout:
            raise PlanError(f"--stall-kill ({self.stall_kill} s) must be longer than --stall-timeout "
                            f"({self.stall_timeout} s): a stalled worker is reported first, killed later")

    @property
    def startup_kill(self) -> float:
        """Before its first event a worker is killed after the same factor as later stalls."""
        return self.startup_timeout * self.stall_kill / self.stall_timeout


@dataclass
class ProcRecord:
    """One process of the run as run.json shows it, plus the supervisor's live bookkeeping."""

    spec: ProcessSpec
    pid: int | None = None
    pgid: int | None = None
    start_time: float | None = None
    end_time: float | None = None
    exit_code: int | None = None
    signal: str | None = None
    error: str | None = None
    started_at: float | None = None          # monotonic
    last_event_at: float | None = None       # monotonic
    stall_warned: bool = False
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))

    @property
    def running(self) -> bool:
        return self.pid is not None and self.end_time is None

    @property
    def ended(self) -> bool:
        return self.end_time is not None

    def to_dict(self) -> dict[str, Any]:
        s = self.spec
        return {"name": s.name, "role": s.role, "host": s.host, "rank": s.rank, "pid": self.pid,
                "pgid": self.pgid, "start_time": iso_time(self.start_time) if self.start_time else None,
                "end_time": iso_time(self.end_time) if self.end_time else None,
                "exit_code": self.exit_code, "signal": self.signal, "error": self.error, "log": s.log}


class AgentHandle:
    """The launcher's end of one node agent: its process, its streams, its reader threads."""

    def __init__(self, host: str, transport: Transport, spec: dict[str, Any], inbox: queue.Queue) -> None:
        self.host = host
        self.transport = transport
        self.spec = spec
        self.inbox = inbox
        self.popen: subprocess.Popen | None = None
        self.pid: int | None = None
        self.alive = False
        self.stderr_tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()

    def spawn(self) -> None:
        """Start the agent (call from the main thread, see ``launcher.proc.set_pdeathsig``)."""
        self.popen = self.transport.spawn(self.host)
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
                msg = json.loads(text)
            except ValueError:
                msg = None
            if isinstance(msg, dict) and "type" in msg:
                self.inbox.put(("msg", self.host, msg))
            else:
                self.inbox.put(("text", self.host, text))
        self.inbox.put(("eof", self.host, self.popen.wait()))

    def _read_stderr(self) -> None:
        assert self.popen is not None and self.popen.stderr is not None
        for raw in self.popen.stderr:
            self.inbox.put(("stderr", self.host, raw.decode("utf-8", "replace").rstrip("\r\n")))

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


class Supervisor:
    """Runs ``plan`` and returns its ``RunSummary``; see the module docstring."""

    def __init__(self, plan: LaunchPlan, files: RunFiles, renderer: Renderer, transport: Transport,
                 options: SupervisorOptions, run_info: dict[str, Any],
                 notes: dict[str, Any] | None = None, fetcher: Any = None) -> None:
        self.plan = plan
        self.fetcher = fetcher  # copies rank 0's outputs back (multihost.OutputFetcher) or None
        self.files = files
        self.ui = renderer
        self.transport = transport
        self.opts = options
        self.run_info = run_info
        self.notes = notes or {}
        self.procs = {p.name: ProcRecord(p) for p in plan.processes}
        self.progress = RunProgress(plan.world_size)
        self.inbox: queue.Queue = queue.Queue()
        self.agents: dict[str, AgentHandle] = {}
        self.status = "running"
        self.root_cause: RootCause | None = None
        self.interrupted: int | None = None
        self.stopping_since: float | None = None
        self.stop_deadline: float | None = None
        self.sched_deadline: float | None = None
        self.start_wall = time.time()
        self._pending_signal: int | None = None
        self._ui_broken = False

    # -- public ----------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Start every agent, supervise until all have ended, and return the summary."""
        handlers = self._install_signal_handlers()
        try:
            self._save()
            self._ui("run_started", self.plan, str(self.files.root), self.notes)
            for p in self.plan.processes:
                self.files.open_log(p.log)
            for host in self.plan.hosts:
                spec = {"version": 1, "host": host, "grace": self.opts.grace,
                        "processes": [p.to_dict() for p in self.plan.processes_on(host)]}
                self.agents[host] = AgentHandle(host, self.transport, spec, self.inbox)
            for agent in self.agents.values():  # spawn all first (main thread), then threads
                agent.spawn()
            for agent in self.agents.values():
                agent.start_readers()
            self._save()
            self._loop()
            self._fetch_outputs()
            return self._finish()
        except BaseException as exc:  # a launcher bug: say so in run.json, then clean up
            self.status = "failed"
            self._save({"launcher_error": f"{type(exc).__name__}: {exc}",
                        "end_time": iso_time(time.time())})
            raise
        finally:
            for agent in self.agents.values():
                agent.kill()
            self.transport.close()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    # -- main loop -------------------------------------------------------------------------------
    def _loop(self) -> None:
        last_tick = 0.0
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
            self._check_deadlines(now)
            if now - last_tick >= 1.0:
                last_tick = now
                self._ui("tick", self.progress)

    def _dispatch(self, item: tuple) -> None:
        kind, host, payload = item
        if kind == "msg":
            handler: Callable | None = getattr(self, f"_on_{payload.get('type')}", None)
            if handler is not None:
                handler(host, payload)
        elif kind == "text":
            self.files.log(f"logs/agent-{host}.log", payload)
        elif kind == "stderr":
            self.agents[host].stderr_tail.append(payload)
            self.files.log(f"logs/agent-{host}.log", payload)
        elif kind == "eof":
            self._on_agent_eof(host, payload)

    # -- agent messages --------------------------------------------------------------------------
    def _on_hello(self, host: str, msg: dict) -> None:
        agent = self.agents[host]
        if agent.pid is None and msg.get("pid"):  # a remote agent: its pid there
            agent.pid = msg.get("pid")
            self._save()

    def _on_started(self, host: str, msg: dict) -> None:
        rec = self.procs.get(msg.get("name"))
        if rec is None:
            return
        rec.pid, rec.pgid = msg.get("pid"), msg.get("pgid")
        rec.start_time = msg.get("time") or time.time()
        rec.started_at = time.monotonic()
        self._save()
        self._ui("process_started", rec.spec.name, rec.spec.rank, host, rec.pid)

    def _on_line(self, host: str, msg: dict) -> None:
        rec = self.procs.get(msg.get("name"))
        if rec is None:
            return
        line = msg.get("line", "")
        record = parse_event(line)
        if record is None:
            self.files.log(rec.spec.log, line)
            rec.tail.append(line)
            return
        self.files.metric({**record, "host": host})
        if rec.spec.role != "worker":
            return
        if self.fetcher is not None and rec.spec.rank == 0 and record.get("event") == "checkpoint" \
                and record.get("path"):
            self.fetcher.fetch(record["path"])  # queued; copied by the fetcher's thread
        rec.last_event_at = time.monotonic()
        if rec.stall_warned:
            rec.stall_warned = False
            self._ui("message", "info", f"rank {rec.spec.rank} is emitting events again")
        self.progress.update(record, time.time())
        self._ui("event", host, record, self.progress)

    def _on_exited(self, host: str, msg: dict) -> None:
        rec = self.procs.get(msg.get("name"))
        if rec is None or rec.ended:
            return
        rec.end_time = msg.get("time") or time.time()
        rec.exit_code, rec.signal, rec.error = msg.get("exit_code"), msg.get("signal"), msg.get("error")
        if rec.pid is None and msg.get("pid"):
            rec.pid = msg.get("pid")
        if rec.error:
            rec.tail.append(rec.error)
        self._save()
        ok = rec.exit_code == 0
        self._ui("process_exited", rec.spec.name, rec.spec.rank, host, rec.exit_code, rec.signal,
                 ok or self.stopping_since is not None)
        if self.stopping_since is not None:
            return
        workers = [r for r in self.procs.values() if r.spec.role == "worker"]
        if rec.spec.role == "worker":
            if not ok:
                self._fail(rec, exit_text(rec.exit_code, rec.signal))
            elif all(r.exit_code == 0 for r in workers):
                if any(r.spec.role == "scheduler" and not r.ended for r in self.procs.values()):
                    self.sched_deadline = time.monotonic() + self.opts.scheduler_wait
        elif not ok and any(not r.ended for r in workers):
            self._fail(rec, exit_text(rec.exit_code, rec.signal) + " while workers were running")

    def _on_warning(self, host: str, msg: dict) -> None:
        self._ui("message", "warning", f"agent on {host}: {msg.get('message')}")

    def _on_agent_eof(self, host: str, returncode: int) -> None:
        agent = self.agents[host]
        agent.alive = False
        lost = [r for r in self.procs.values() if r.spec.host == host and not r.ended]
        for rec in lost:
            # The agent's children died with it (PR_SET_PDEATHSIG), but what they started may
            # live on in their process groups: on this host, kill the recorded groups.
            if self.transport.local and rec.pgid:
                kill_group(rec.pgid, signal.SIGKILL)
            rec.end_time = time.time()
            rec.error = f"lost: the node agent on {host} ended before reporting this process's exit"
        if lost:
            self._save()
        if lost and self.stopping_since is None:
            cause = RootCause(name=f"agent@{host}", host=host, rank=None,
                              reason=f"node agent ended unexpectedly ({exit_text(*_split_rc(returncode))})",
                              exit_code=returncode, log=f"logs/agent-{host}.log",
                              log_tail=list(agent.stderr_tail))
            self._fail_with(cause)

    # -- failure and stopping ----------------------------------------------------------------------
    def _fail(self, rec: ProcRecord, reason: str) -> None:
        err = self.progress.errors.get(rec.spec.rank) if rec.spec.rank is not None else None
        error = f"{err.get('kind') or 'error'}: {err.get('message')}" if err else rec.error
        self._fail_with(RootCause(name=rec.spec.name, host=rec.spec.host, rank=rec.spec.rank,
                                  reason=reason, exit_code=rec.exit_code, signal=rec.signal,
                                  log=rec.spec.log, log_tail=list(rec.tail), error=error))

    def _fail_with(self, cause: RootCause) -> None:
        if self.root_cause is not None or self.stopping_since is not None:
            return
        self.root_cause = cause
        self.status = "failed"
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
                agent.send({"cmd": "stop", "grace": grace, "reason": reason})
        self._save()

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
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
            self.status = "interrupted"
            self._ui("message", "warning", f"{name} received: stopping the run (grace "
                                           f"{self.opts.grace:g} s; press Ctrl-C again to kill at once)")
            self._stop(self.opts.grace, f"launcher received {name}")
        else:
            self._ui("message", "warning", f"{name} received again: killing every process now")
            self._stop(0.0, f"launcher received {name} again")

    def _check_stalls(self, now: float) -> None:
        if self.stopping_since is not None:
            return
        for rec in self.procs.values():
            if rec.spec.role != "worker" or not rec.running or rec.started_at is None:
                continue
            if rec.last_event_at is None:  # still starting up: the longer allowance
                quiet, what = now - rec.started_at, "since it started"
                warn, kill = self.opts.startup_timeout, self.opts.startup_kill
            else:
                quiet, what = now - rec.last_event_at, "since its last event"
                warn, kill = self.opts.stall_timeout, self.opts.stall_kill
            if quiet >= kill:
                self._fail(rec, f"stalled: no event for {quiet:.0f} s {what} (limit {kill:g} s)")
                return
            if quiet >= warn and not rec.stall_warned:
                rec.stall_warned = True
                self._ui("message", "warning", f"rank {rec.spec.rank} on {rec.spec.host} looks stalled: "
                                               f"no event for {quiet:.0f} s {what}; it is treated as failed "
                                               f"after {kill:g} s")

    def _check_deadlines(self, now: float) -> None:
        if self.sched_deadline is not None and self.stopping_since is None and now >= self.sched_deadline:
            self._ui("message", "warning", f"the scheduler is still running {self.opts.scheduler_wait:g} s "
                                           f"after the last worker finished; stopping it")
            self._stop(self.opts.grace, "every worker finished")
        if self.stop_deadline is not None and now >= self.stop_deadline:
            self.stop_deadline = now + AGENT_STOP_SLACK_S
            self._ui("message", "warning", "agents did not confirm the stop in time; killing the "
                                           "recorded process groups")
            for rec in self.procs.values():
                if not rec.ended and rec.pgid and self.transport.local:
                    kill_group(rec.pgid, signal.SIGKILL)
            for agent in self.agents.values():
                agent.kill()

    # -- bookkeeping ------------------------------------------------------------------------------
    def _ui(self, method: str, *args: Any) -> None:
        """Call the renderer; a broken terminal or pipe must not break supervision."""
        if self._ui_broken:
            return
        try:
            getattr(self.ui, method)(*args)
        except (OSError, ValueError):
            self._ui_broken = True

    def _record(self) -> dict[str, Any]:
        data = dict(self.run_info)
        data.update({
            "status": self.status,
            "start_time": iso_time(self.start_wall),
            "processes": [r.to_dict() for r in self.procs.values()],
            "agents": [{"host": a.host, "pid": a.pid} for a in self.agents.values()],
            "root_cause": self.root_cause.to_dict() if self.root_cause else None,
        })
        return data

    def _fetch_outputs(self) -> None:
        """Wait for rank 0's outputs to be copied back (a host not sharing the run dir)."""
        if self.fetcher is None:
            return
        for problem in self.fetcher.finish():
            self._ui("message", "warning", problem)

    def _save(self, extra: dict[str, Any] | None = None) -> None:
        data = self._record()
        if extra:
            data.update(extra)
        self.files.save_run_json(data)

    def _finish(self) -> RunSummary:
        workers = [r for r in self.procs.values() if r.spec.role == "worker"]
        if self.interrupted is not None:
            status, code, note = "interrupted", 128 + self.interrupted, f"by {signal_name(self.interrupted)}"
        elif self.root_cause is not None:
            status, code, note = "failed", 1, None
        elif workers and all(r.exit_code == 0 for r in workers):
            status, code, note = "succeeded", 0, None
        else:
            status, code, note = "failed", 1, "not every worker succeeded"
        self.status = status
        end = time.time()
        top1 = self.progress.top1()
        if top1 is None:
            top1 = _eval_json_top1(self.files.root / "eval.json")
        summary = RunSummary(
            status=status, exit_code=code, run_dir=str(self.files.root), wall_s=end - self.start_wall,
            imgs_per_s=self.progress.final_imgs_per_s(), final_loss=self.progress.final_loss(),
            top1=top1, best_checkpoint=self.progress.best_checkpoint(),
            replicas_in_sync=self.progress.replicas_in_sync(),
            checksums={r: f.get("checksum") for r, f in sorted(self.progress.finish.items())},
            root_cause=self.root_cause, note=note)
        self._save({"end_time": iso_time(end), "wall_s": round(end - self.start_wall, 3),
                    "exit_code": code, "summary": summary.to_dict()})
        self._ui("finished", summary)
        return summary


def _split_rc(returncode: int | None) -> tuple[int | None, str | None]:
    if returncode is not None and returncode < 0:
        return returncode, signal_name(-returncode)
    return returncode, None


def _eval_json_top1(path: Path) -> float | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("top1")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None
