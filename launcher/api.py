"""The Python API: ``launch(...)`` runs N data-parallel workers and returns a ``LaunchResult``.

``wrn-launch`` (``launcher.cli``) is a thin wrapper over this module. The data flow:

    LaunchConfig (launcher.config) --prepare()--> LaunchInputs, a value, and HeldResources
        (launcher.session.prepare: every input checked, the nodes found and pre-flighted by the
        chosen backend) --RunSession (launcher.session.attempts)--> one Monitor per attempt
        (launcher.supervise.monitor) --> the last attempt's RunResult

1. ``prepare``: every check that can fail on bad input raises one ``LaunchError`` (a one-paragraph
   message) before anything is created or started.
2. dry run: the plan is shown and nothing else happens.
3. otherwise: the run directory is created (config.yaml, rank_table.json, hostfile, run.json)
   and the session runs the attempts until one does not fail or the restarts are used up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster.plan import LaunchPlan
from launcher.config import LaunchConfig, LaunchError
from launcher.session.attempts import RunSession
from launcher.session.prepare import prepare
from launcher.supervise.result import RunSummary
from launcher.ui.renderers import Renderer, make_renderer

__all__ = ["LaunchConfig", "LaunchError", "LaunchResult", "launch"]


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
    inputs, held = prepare(config)
    session = RunSession(inputs, held, ui)
    try:
        if config.dry_run:
            plan = session.plan(0)
            ui.show_plan(plan, inputs.notes)
            return LaunchResult(0, "dry-run", str(inputs.run_dir), plan)
        session.create_run_dir()
        try:
            result, plan = session.run()
        finally:
            ui.close()
        return LaunchResult(result.exit_code, result.state.value, str(session.inputs.run_dir),
                            plan, result.summary)
    finally:
        session.close()
