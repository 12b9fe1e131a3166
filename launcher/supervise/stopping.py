"""Stopping an attempt: every agent told to stop its processes (SIGTERM to each process group,
``grace`` seconds, SIGKILL), the deadline after which the launcher kills what is left itself,
the scheduler's wait after the last worker finished, and the launcher's own signals (caught by
``SignalCatcher``: a handler only notes the signal, the monitor's loop acts on it).

A first SIGINT, SIGTERM, SIGHUP or SIGUSR1 stops the run cleanly (state INTERRUPTED, or
PREEMPTED for SIGTERM/SIGUSR1 inside a Slurm job; exit 128+signal); a second one skips the
grace period. A SIGTERM that reached a worker first (scancel signals every process of a job at
once) makes the launcher's own SIGTERM an interruption from outside, not a failure.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any

from launcher.agent.proc import kill_group, signal_name
from launcher.config import SupervisorConfig
from launcher.supervise.result import RunState, interrupted_state
from wrn.contract import Stop

CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)


class SignalCatcher:
    """Installs the handlers (from the main thread only; elsewhere it does nothing) and keeps
    the signal that came, for ``take``."""

    def __init__(self) -> None:
        self._pending: int | None = None
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in CAUGHT:
            self._old[signum] = signal.signal(signum, self._note)

    def restore(self) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old.clear()

    def _note(self, signum: int, _frame: Any) -> None:
        self._pending = signum

    def take(self) -> int | None:
        """The signal received since the last call, or None."""
        signum, self._pending = self._pending, None
        return signum


#: Extra seconds an agent gets beyond the grace period to report that its processes ended,
#: before the launcher kills the recorded process groups itself (local hosts only).
AGENT_STOP_SLACK_S = 5.0


class Stopper:
    """The stop of one attempt (see the module docstring). ``agents``: the monitor's agent
    handles by host; ``processes``: its process states by name; ``say(level, text)``: the
    run's console."""

    def __init__(self, agents: Mapping[str, Any], processes: Mapping[str, Any], local: bool,
                 options: SupervisorConfig, say: Callable[[str, str], None],
                 clock: Callable[[], float]) -> None:
        self.agents, self.processes, self.local = agents, processes, local
        self.opts, self.say, self.clock = options, say, clock
        self.since: float | None = None            # when the stop began
        self.deadline: float | None = None         # when what is left gets killed
        self.sched_deadline: float | None = None   # when a scheduler left alone gets stopped
        self.interrupted: int | None = None        # the signal that stopped the run
        self.terminated_from_outside = False       # a process died of a SIGTERM we did not send

    @property
    def stopping(self) -> bool:
        return self.since is not None

    def stop(self, grace: float, reason: str) -> None:
        """Tell every live agent to stop its processes within ``grace`` seconds."""
        now = self.clock()
        if self.since is None:
            self.since = now
        self.deadline = now + grace + AGENT_STOP_SLACK_S
        for agent in self.agents.values():
            if agent.alive:
                agent.send(Stop(grace, reason))

    def on_signal(self, signum: int) -> RunState | None:
        """The launcher got ``signum``: the state the attempt ends in, when this decides it."""
        name = signal_name(signum)
        if self.since is None:
            self.interrupted = signum
            self.say("warning", f"{name} received: stopping the run (grace {self.opts.grace:g} s; "
                                f"press Ctrl-C again to kill at once)")
            self.stop(self.opts.grace, f"launcher received {name}")
            return interrupted_state(signum)
        if self.interrupted is None and self.terminated_from_outside:
            # the same SIGTERM reached a worker first (scancel, a preemption, a system
            # shutdown): the run was stopped from outside, not failed; the stop keeps its grace
            self.interrupted = signum
            self.say("warning", f"{name} received: the run was stopped from outside")
            return interrupted_state(signum)
        self.say("warning", f"{name} received again: killing every process now")
        self.stop(0.0, f"launcher received {name} again")
        return None

    def workers_done(self) -> None:
        """Every worker succeeded: the scheduler gets ``scheduler_wait`` seconds to end."""
        self.sched_deadline = self.clock() + self.opts.scheduler_wait

    def check(self, now: float) -> bool:
        """Act on the deadlines; True when a stop began now."""
        began = False
        if self.sched_deadline is not None and self.since is None and now >= self.sched_deadline:
            self.say("warning", f"the scheduler is still running {self.opts.scheduler_wait:g} s "
                                f"after the last worker finished; stopping it")
            self.stop(self.opts.grace, "every worker finished")
            began = True
        if self.deadline is not None and now >= self.deadline:
            self.deadline = now + AGENT_STOP_SLACK_S
            self.say("warning", "agents did not confirm the stop in time; killing the recorded "
                                "process groups")
            for proc in self.processes.values():
                if not proc.ended and proc.pgid and self.local:
                    kill_group(proc.pgid, signal.SIGKILL)
            for agent in self.agents.values():
                agent.kill()
        return began
