"""A launch's run, from its first attempt to its last: ``RunSession``.

The session owns what the attempts share: the launch's inputs (a value, replaced when a
restart leaves hosts out), the held resources (the backend's connections, the scheduler port,
the run directory's lock), the run's live state (``RunBoard``, which every view reads), the
copy of rank 0's outputs from another host, and a standby attempt. It runs one ``Monitor`` per
attempt; when one fails with ``--max-restarts`` left it restarts:

* the failed attempt is archived in run.json (``attempts``) and its logs in
  ``logs/attempt-<n>/``;
* ``--min-devices``: every host's pre-flight runs again over the run's connections
  (``Backend.recheck``) and the hosts that fail it are left out (``shrinks`` in run.json);
* ``--standby``: a standby started during the failed attempt is released (``go``) and adopted by
  the next monitor when the restart keeps every host, else stopped;
* otherwise a new scheduler port is found free on the master host (checked there through the
  backend), and the next plan is made from the same inputs: never a patched plan.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cluster.errors import PlanError
from cluster.hosts import format_hostfile, mask_command, mask_env
from cluster.plan import CONFIG_NAME, RANK_TABLE_NAME, LaunchPlan
from launcher.backends.base import BackendError, DiscoveryRequest
from launcher.backends.ports import reserve_port
from launcher.config import LaunchError
from launcher.hostinfo import machines
from launcher.installation import versions
from launcher.rundir.files import RunFiles
from launcher.rundir.layout import archive_logs, create_run_dir, iso_time
from launcher.rundir.record import RunRecord, RunRecordWriter, masked_plan
from launcher.rundir.remote import OutputFetcher, output_fetcher, share_run_dir
from launcher.session.inputs import HOSTFILE_NAME, LaunchInputs
from launcher.session.resources import HeldResources
from launcher.supervise.console import RunConsole
from launcher.supervise.monitor import Monitor
from launcher.supervise.ranks import RunBoard
from launcher.supervise.result import RunResult, RunState
from launcher.supervise.stalls import StallPolicy
from launcher.supervise.standby import Say, Standby
from wrn.config import dump_config
from wrn.fileio import write_atomic

if TYPE_CHECKING:
    from launcher.ui.renderers import Renderer

#: How many ports a restart tries before it gives up on finding one free on the master host.
PORT_TRIES = 20


class RunSession:
    """The attempts of one launch (see the module docstring). ``run`` returns the last
    attempt's result and plan; ``close`` releases what the launch holds."""

    def __init__(self, inputs: LaunchInputs, held: HeldResources, renderer: Renderer) -> None:
        self.inputs, self.held, self.renderer = inputs, held, renderer
        self.config = inputs.config
        self.board = RunBoard(inputs.run_dir.name, inputs.request.backend,
                              stalls=StallPolicy(self.config.supervisor))
        self.ui = RunConsole(renderer, self.board)
        self.notes: dict[str, str] = {}  # what the attempts add to the inputs' notes
        self.fetcher: OutputFetcher | None = None
        self.standby: Standby | None = None      # the next attempt, started and waiting
        self.last_record: RunRecord | None = None  # the last monitored attempt's record
        self.restarts = 0

    @property
    def backend(self):
        return self.held.backend

    def plan(self, attempt: int = 0) -> LaunchPlan:
        """Attempt ``attempt``'s plan on the scheduler port held now."""
        return self.inputs.plan(attempt, self.held.port_number)

    # -- the run directory ------------------------------------------------------------------------
    def create_run_dir(self) -> None:
        """Create the run directory (a resume continues in its own) and write its inputs."""
        inputs = self.inputs
        if self.config.resume is None:
            try:
                run_dir, self.held.lock = create_run_dir(inputs.run_dir, inputs.explicit_run_dir)
            except PlanError as exc:
                raise LaunchError(str(exc)) from None
            except OSError as exc:
                raise LaunchError(f"cannot create the run directory {inputs.run_dir}: "
                                  f"{exc.strerror}; pass a writable --run-dir") from None
            if run_dir != inputs.run_dir:  # a default name that was taken got a suffix
                self.inputs = inputs = inputs.moved_to(run_dir)
                self.board.name = run_dir.name
        dump_config(inputs.train, inputs.run_dir / CONFIG_NAME)
        self.backend.record_run(inputs.run_dir, inputs.nodes)
        if inputs.hosts:
            write_atomic(inputs.run_dir / HOSTFILE_NAME, format_hostfile(inputs.hosts))

    def _first_record(self) -> RunRecord:
        """The run record of this launch's first attempt (after the resumed run's attempts)."""
        inputs = self.inputs
        record = RunRecord(command=mask_command(self.config.command) or None, cwd=os.getcwd(),
                           versions=versions(), backend=inputs.request.backend,
                           env=mask_env(inputs.env, inputs.request.secret_names),
                           config=str(inputs.run_dir / CONFIG_NAME),
                           max_restarts=self.config.max_restarts, machines=machines(inputs.nodes))
        previous = inputs.previous
        if previous is not None:  # --resume: the interrupted attempt becomes an "ended" one
            record.attempts = previous.attempts + [previous.as_attempt("ended")]
            record.attempt = previous.attempt + 1
            archive_logs(inputs.run_dir, previous.attempt)
        return record

    def _share_run_dir(self, plan: LaunchPlan, record: RunRecord) -> None:
        """Other hosts: the run directory's inputs made visible there, and rank 0's outputs
        copied back when it does not share the run directory (once, before the first attempt)."""
        if self.backend.local or self.fetcher is not None:
            return
        run_dir = self.inputs.run_dir
        try:
            shared = share_run_dir(run_dir, self.backend, self.inputs.nodes)
            self.fetcher = output_fetcher(plan, self.inputs.nodes, run_dir, self.backend, shared)
            how = self.backend.files_via(self.fetcher.host) if self.fetcher is not None else None
        except BackendError as exc:  # the pre-flight checked the path; a race, a quota
            record.status, record.launcher_error = "failed", str(exc)
            record.end_time = iso_time(time.time())
            RunRecordWriter(run_dir).write(record)
            raise LaunchError(f"{exc}; nothing was started (the run directory {run_dir} "
                              f"records this)") from None
        self.notes["run dir on hosts"] = ", ".join(f"{h}: {way}" for h, way in shared.items())
        if self.fetcher is not None:
            self.notes["rank 0 outputs"] = f"copied back from {self.fetcher.host} over {how}"

    # -- the attempts -----------------------------------------------------------------------------
    def run(self) -> tuple[RunResult, LaunchPlan]:
        """Monitor attempts until one does not fail or the restarts are used up."""
        record = self._first_record()
        try:
            while True:
                plan = self.standby.plan if self.standby is not None else self.plan(self.restarts)
                result = self._attempt(plan, record)
                if result.state is not RunState.FAILED or self.restarts >= self.config.max_restarts:
                    return result, plan
                record = self._restart(result)
                if record is None:
                    return result, plan
        finally:
            try:
                if self.standby is not None:  # the run ends with a standby still waiting
                    self._stop_standby("the run ended")
            finally:
                if self.fetcher is not None:
                    self.fetcher.close()  # every pending copy is done before the launcher returns

    def _attempt(self, plan: LaunchPlan, record: RunRecord) -> RunResult:
        """One attempt of ``plan``, monitored to its end."""
        run_dir = self.inputs.run_dir
        if plan.rank_table:
            write_atomic(run_dir / RANK_TABLE_NAME, plan.rank_table)
        self._share_run_dir(plan, record)
        record.plan = masked_plan(plan.to_dict())
        record.rank_table = str(run_dir / RANK_TABLE_NAME) if plan.rank_table else None
        files = RunFiles(run_dir)
        monitor = Monitor(plan, files, self.renderer, self.backend, self.config.supervisor, record,
                          RunRecordWriter(run_dir, len(plan.processes), files.trouble), self.board,
                          {**self.inputs.notes, **self.notes}, self.fetcher, adopt=self.standby,
                          start_standby=self._standby_starter())
        self.standby = None  # released and adopted: the monitor owns its agents now
        try:
            return monitor.run()
        finally:
            files.close()
            self.standby, self.last_record = monitor.standby, monitor.record

    def _restart(self, result: RunResult) -> RunRecord | None:
        """After a failed attempt: the next attempt's record, on the hosts that are left, with
        the standby released or a new scheduler port; None when it cannot restart (said)."""
        self.restarts += 1
        reason = result.failure_reason()
        record = result.record.next_attempt("restarted", reason)
        archive_logs(self.inputs.run_dir, record.attempt - 1)
        self.ui.message("warning", f"restart {self.restarts} of {self.config.max_restarts} from "
                                   f"the newest valid checkpoint: {reason}")
        shrink, problem = self._drop_lost_hosts()
        if shrink is not None:
            record.shrinks = record.shrinks + [{"attempt": record.attempt, **shrink}]
        if problem is None and shrink is not None:
            dropped = ", ".join(f"{d['host']} ({d['reason']})" for d in shrink["dropped"])
            self.ui.message("warning", f"continuing without {dropped}: world size "
                                       f"{shrink['world_size_before']} -> {shrink['world_size_after']}")
            write_atomic(self.inputs.run_dir / HOSTFILE_NAME, format_hostfile(self.inputs.hosts))
            if self.fetcher is not None and self.fetcher.host not in {n.host for n in self.inputs.nodes}:
                self.fetcher.close()
                self.fetcher = None
        if self.standby is not None:
            was = self.standby.entry["state"]
            if shrink is None and problem is None and self.standby.release():  # "go" is sent
                self.ui.message("info", f"restart {self.restarts}: continuing from the standby "
                                        f"attempt ({was} when the failure came)")
            else:
                self._stop_standby("the restart runs on other hosts" if shrink
                                   else "the restart does not use it")
        if problem is None and self.standby is None:
            problem = self.renew_port()
        if problem is not None:
            self.ui.message("error", f"cannot restart: {problem}")
            return None
        return record

    def _drop_lost_hosts(self) -> tuple[dict[str, Any] | None, str | None]:
        """For a restart under ``--min-devices``: every host's pre-flight again (over the run's
        connections); hosts that fail it are left out while at least ``--min-devices`` devices
        remain. Returns (what was left out, as run.json's ``shrinks`` entry, or None; a problem
        that stops the restart, or None)."""
        inputs = self.inputs
        if self.config.min_devices is None or self.backend.local:
            return None, None
        request = DiscoveryRequest(self.config, inputs.train, inputs.request.backend, "",
                                   inputs.run_dir, inputs.hosts, inputs.previous)
        lost = self.backend.recheck(request, inputs.nodes)
        if not lost:
            return None, None
        kept = [n for n in inputs.nodes if n.host not in lost]
        before, after = inputs.request.world_size, sum(len(n.device_ids) for n in kept)
        shrink = {"dropped": [{"host": n.host, "devices": len(n.device_ids), "reason": lost[n.host]}
                              for n in inputs.nodes if n.host in lost],
                  "world_size_before": before, "world_size_after": after}
        if after < self.config.min_devices:
            return shrink, (f"the pre-flight failed on {', '.join(lost)} "
                            f"({'; '.join(f'{h}: {why}' for h, why in lost.items())}) and {after} "
                            f"device(s) would remain, fewer than --min-devices "
                            f"{self.config.min_devices}")
        for host in lost:
            self.backend.forget(host)
        self.inputs = inputs.without(lost)
        if self.held.port is not None and self.inputs.request.world_size == 1:
            self.held.port.release()  # a single CPU/GPU worker runs without a scheduler
            self.held.port = None
        return shrink, None

    def renew_port(self, release_first: bool = True) -> str | None:
        """For a restart: a scheduler port that is free on the master host now (checked there,
        through the backend). Returns a problem (one line) when none could be found.

        ``release_first``: the held port is let go before a new one is looked for (a cold
        restart: the old scheduler has ended, and the same port may be taken again). False
        (a standby, next to the running scheduler): the new port is reserved first and the
        held one is kept when none is found."""
        held = self.held
        if held.port is None or self.inputs.request.rank_table is not None:
            return None  # no scheduler, or a rank table's port shared with other servers
        master = self.inputs.nodes[0].host
        tries = 1 if self.config.port is not None else PORT_TRIES
        if release_first:
            held.port.release()
        for _ in range(tries):
            try:
                port = reserve_port(self.config.port, self.config.port_range)
            except PlanError as exc:
                if release_first:
                    held.port = None
                return str(exc)
            try:
                free = self.backend.port_free(master, port.port)
            except BackendError as exc:
                port.release()
                return str(exc)
            if free:
                if not release_first:
                    held.port.release()
                held.port = port
                return None
            port.release()
        return (f"no free scheduler port on the master host {master} after {tries} tries; free "
                f"ports of --port-range there or pass another --port")

    # -- the standby ------------------------------------------------------------------------------
    def _standby_starter(self) -> Callable[[Say], Standby | None] | None:
        """What starts the standby of the next attempt (``--standby`` with a restart left): the
        next plan on a newly checked scheduler port (the running attempt's stays held), its
        agents started. It says what happens through the monitor's ``say``."""
        if not self.config.standby or self.restarts >= self.config.max_restarts:
            return None
        attempt = self.restarts + 1

        def start(say: Say) -> Standby | None:
            problem = self.renew_port(release_first=False)
            if problem is not None:
                say("warning", f"standby: none started, a restart will start cold: {problem}")
                return None
            standby = Standby(self.plan(attempt), self.backend, self.config.supervisor,
                              self.inputs.attempt_number(attempt), say)
            standby.start()
            return standby

        return start

    def _stop_standby(self, reason: str) -> None:
        """Stop a standby that will not be used and write its final state to run.json (in the
        last monitored attempt's record, whose ``standbys`` holds its entry)."""
        standby, self.standby = self.standby, None
        standby.stop(reason)
        if self.last_record is not None:
            RunRecordWriter(self.inputs.run_dir).write(self.last_record)

    def close(self) -> None:
        """Release what the launch holds (port, run directory, connections)."""
        self.held.close()
