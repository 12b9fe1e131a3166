"""The Python API: ``launch(...)`` runs N data-parallel workers and returns a ``LaunchResult``.

``wrn-launch`` (``launcher.cli``) is a thin wrapper over this module. The data flow:

    LaunchConfig (launcher.config) --prepare()--> Prepared (launcher.session.prepare): checked inputs,
        nodes, backend with its connections --Prepared.plan(attempt)--> LaunchPlan (complete,
        immutable) --Monitor (launcher.supervise.monitor)--> RunResult --> the next attempt, or the end

1. ``prepare``: every check that can fail on bad input raises one ``LaunchError`` (a
   one-paragraph message) before anything is created or started.
2. dry run: the plan is shown and nothing else happens.
3. otherwise: the run directory is created (config.yaml, rank_table.json, hostfile, run.json)
   and each attempt is monitored until the end. A failed attempt, with ``--max-restarts`` left,
   is followed by a new plan from the same inputs (a scheduler port re-checked on the master
   host, every worker resuming from the newest valid checkpoint) through the same backend.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from cluster.errors import PlanError
from cluster.hosts import format_hostfile, mask_command, mask_env
from cluster.plan import CONFIG_NAME, RANK_TABLE_NAME, LaunchPlan
from launcher.backends.base import BackendError
from launcher.config import LaunchConfig, LaunchError
from launcher.supervise.monitor import Monitor
from launcher.supervise.ranks import RunBoard
from launcher.supervise.result import RunResult, RunState
from launcher.supervise.stalls import StallPolicy
from launcher.session.prepare import HOSTFILE_NAME, Prepared, prepare, versions
from launcher.supervise.result import RunSummary
from launcher.rundir.record import RunRecord, RunRecordWriter, masked_plan
from launcher.ui.renderers import Renderer, RunConsole, make_renderer
from launcher.rundir.layout import archive_logs, create_run_dir, iso_time
from launcher.rundir.files import RunFiles
from launcher.backends.slurm import SlurmBackend, record_job
from launcher.supervise.standby import Say, Standby
from wrn.config import dump_config
from wrn.fileio import write_atomic

__all__ = ["LaunchConfig", "LaunchError", "LaunchResult", "launch", "prepare"]


@dataclass(frozen=True)
class LaunchResult:
    """What ``launch`` returns; ``exit_code`` is the CLI's exit status."""

    exit_code: int
    status: str
    run_dir: str
    plan: LaunchPlan
    summary: RunSummary | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _dropped_names(shrink: dict[str, Any]) -> str:
    return ", ".join(f"{d['host']} ({d['reason']})" for d in shrink["dropped"])


def launch(config: LaunchConfig | None = None, *, renderer: Renderer | None = None,
           **fields: Any) -> LaunchResult:
    """Launch a run (or show its plan) and return when it is over.

    Pass a ``LaunchConfig`` or its fields as keyword arguments, flat as the CLI names them, e.g.
    ``launch(devices="2", overrides=("epoch_size=1",), grace=1)``. Raises ``LaunchError`` on bad
    input (nothing started then); every other outcome is in the result.
    """
    if config is not None and fields:
        raise TypeError("pass either a LaunchConfig or keyword arguments, not both")
    config = config if config is not None else LaunchConfig.from_fields(**fields)
    ui = renderer or make_renderer()
    prepared = prepare(config)
    try:
        plan = prepared.plan(0)
        if config.dry_run:
            ui.show_plan(plan, prepared.notes)
            return LaunchResult(0, "dry-run", str(prepared.run_dir), plan)
        _create_run_dir(prepared)
        try:
            result, plan = _run_attempts(prepared, ui)
        finally:
            ui.close()
        return LaunchResult(result.exit_code, result.state.value, str(prepared.run_dir), plan,
                            result.summary)
    finally:
        prepared.close()


def _create_run_dir(prepared: Prepared) -> None:
    """Create the run directory (a resume continues in its own) and write its inputs."""
    if prepared.config.resume is None:
        try:
            run_dir, prepared.lock = create_run_dir(prepared.run_dir, prepared.explicit_run_dir)
        except PlanError as exc:
            raise LaunchError(str(exc)) from None
        except OSError as exc:
            raise LaunchError(f"cannot create the run directory {prepared.run_dir}: "
                              f"{exc.strerror}; pass a writable --run-dir") from None
        if run_dir != prepared.run_dir:  # a default name that was taken got a suffix
            prepared.moved_to(run_dir)
    dump_config(prepared.train, prepared.run_dir / CONFIG_NAME)
    if isinstance(prepared.backend, SlurmBackend):
        record_job(prepared.run_dir, prepared.backend.job, prepared.nodes)
    if prepared.hosts:
        write_atomic(prepared.run_dir / HOSTFILE_NAME, format_hostfile(prepared.hosts))


def _first_record(prepared: Prepared) -> RunRecord:
    """The run record of this launch's first attempt (after the resumed run's attempts)."""
    config = prepared.config
    record = RunRecord(command=mask_command(config.command) or None, cwd=os.getcwd(),
                       versions=versions(), backend=prepared.request.backend,
                       env=mask_env(prepared.env, prepared.request.secret_names), config=str(prepared.run_dir / CONFIG_NAME),
                       max_restarts=config.max_restarts)
    previous = prepared.previous
    if previous is not None:  # --resume: the interrupted attempt becomes an "ended" one
        record.attempts = previous.attempts + [previous.as_attempt("ended")]
        record.attempt = previous.attempt + 1
        archive_logs(prepared.run_dir, previous.attempt)
    return record


def _standby_starter(prepared: Prepared,
                     restarts: int) -> Callable[[Say], Standby | None] | None:
    """What starts the standby of attempt ``restarts + 1`` (``--standby`` with a restart left):
    the next plan on a newly checked scheduler port (the running attempt's stays held), its
    agents started. It says what happens through the monitor's ``say``."""
    if not prepared.config.standby or restarts >= prepared.config.max_restarts:
        return None

    def start(say: Say) -> Standby | None:
        problem = prepared.renew_port(release_first=False)
        if problem is not None:
            say("warning", f"standby: none started, a restart will start cold: {problem}")
            return None
        standby = Standby(prepared.plan(restarts + 1), prepared.backend,
                          prepared.config.supervisor, prepared.attempt_number(restarts + 1), say)
        standby.start()
        return standby

    return start


def _stop_standby(standby: Standby, reason: str, record: RunRecord | None, run_dir) -> None:
    """Stop a standby that will not be used and write its final state to run.json (in
    ``record``, the last monitored attempt's, whose ``standbys`` holds its entry)."""
    standby.stop(reason)
    if record is not None:
        RunRecordWriter(run_dir).write(record)


def _run_attempts(prepared: Prepared, ui: Renderer) -> tuple[RunResult, LaunchPlan]:
    """Monitor attempts until one does not fail or the restarts are used up; the last
    attempt's result and plan."""
    config, run_dir = prepared.config, prepared.run_dir
    record = _first_record(prepared)
    board = RunBoard(run_dir.name, prepared.request.backend, stalls=StallPolicy(config.supervisor))
    renderer, ui = ui, RunConsole(ui, board)
    fetcher = None
    standby: Standby | None = None  # the next attempt, started and waiting (--standby)
    finished: RunRecord | None = None  # the last monitored attempt's record
    restarts = 0
    try:
        while True:
            plan = standby.plan if standby is not None else prepared.plan(restarts)
            if plan.rank_table:
                write_atomic(run_dir / RANK_TABLE_NAME, plan.rank_table)
            if not prepared.backend.local and fetcher is None:
                from launcher.backends.multihost import output_fetcher, share_run_dir  # imports paramiko

                try:
                    shared = share_run_dir(run_dir, prepared.backend, prepared.nodes)
                except BackendError as exc:  # the pre-flight checked the path; a race, a quota
                    record.status, record.launcher_error = "failed", str(exc)
                    record.end_time = iso_time(time.time())
                    RunRecordWriter(run_dir).write(record)
                    raise LaunchError(f"{exc}; nothing was started (the run directory {run_dir} "
                                      f"records this)") from None
                prepared.notes["run dir on hosts"] = ", ".join(f"{h}: {how}"
                                                               for h, how in shared.items())
                fetcher = output_fetcher(plan, prepared.nodes, run_dir, prepared.backend, shared)
                if fetcher is not None:
                    how = prepared.backend.files_via(fetcher.host)
                    prepared.notes["rank 0 outputs"] = f"copied back from {fetcher.host} over {how}"
            record.plan = masked_plan(plan.to_dict())
            record.rank_table = str(run_dir / RANK_TABLE_NAME) if plan.rank_table else None
            files = RunFiles(run_dir)
            monitor = Monitor(plan, files, renderer, prepared.backend, config.supervisor, record,
                              RunRecordWriter(run_dir, len(plan.processes), files.trouble),
                              board, prepared.notes, fetcher, adopt=standby,
                              start_standby=_standby_starter(prepared, restarts))
            standby = None  # released and adopted: the monitor owns its agents now
            try:
                result = monitor.run()
            finally:
                files.close()
                standby, finished = monitor.standby, monitor.record
            if result.state is not RunState.FAILED or restarts >= config.max_restarts:
                return result, plan
            restarts += 1
            reason = result.failure_reason()
            record = result.record.next_attempt("restarted", reason)
            archive_logs(run_dir, record.attempt - 1)
            ui.message("warning", f"restart {restarts} of {config.max_restarts} from the newest "
                                  f"valid checkpoint: {reason}")
            shrink, problem = prepared.drop_lost_hosts()
            if shrink is not None:
                record.shrinks = record.shrinks + [{"attempt": record.attempt, **shrink}]
            if problem is None and shrink is not None:
                ui.message("warning", f"continuing without {_dropped_names(shrink)}: world size "
                                      f"{shrink['world_size_before']} -> {shrink['world_size_after']}")
                write_atomic(run_dir / HOSTFILE_NAME, format_hostfile(prepared.hosts))
                if fetcher is not None and fetcher.host not in {n.host for n in prepared.nodes}:
                    fetcher.close()
                    fetcher = None
            if standby is not None:
                was = standby.entry["state"]
                if shrink is None and problem is None and standby.release():  # "go" is sent
                    ui.message("info", f"restart {restarts}: continuing from the standby "
                                       f"attempt ({was} when the failure came)")
                else:
                    _stop_standby(standby, "the restart runs on other hosts" if shrink
                                  else "the restart does not use it", finished, run_dir)
                    standby = None
            if problem is None and standby is None:
                problem = prepared.renew_port()
            if problem is not None:
                ui.message("error", f"cannot restart: {problem}")
                return result, plan
    finally:
        try:
            if standby is not None:  # the run ends with a standby still waiting
                _stop_standby(standby, "the run ended", finished, run_dir)
        finally:
            if fetcher is not None:
                fetcher.close()  # every pending copy is done before the launcher returns
