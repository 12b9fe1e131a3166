"""A checked launch as a value: ``LaunchInputs``, what every attempt's plan is made from.

``launcher.session.prepare`` builds it (and takes the resources it needs, which live apart in
``HeldResources``); ``plan(attempt, port)`` turns it into a fresh, complete ``LaunchPlan``: a
restart is a new plan from the same inputs, never a patched one. A change (a default run
directory that was taken, hosts a restart leaves out) makes a new value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.hosts import HostSpec
from cluster.plan import LaunchPlan, Node, PlanRequest, make_plan
from launcher.config import LaunchConfig
from launcher.rundir.record import RunRecord
from wrn.config import TrainConfig
from wrn.contract import ATTEMPT_ENV

#: The host list of a multi-host run, kept in its run directory for ``--resume``.
HOSTFILE_NAME = "hostfile"


@dataclass(frozen=True)
class LaunchInputs:
    """Everything that stays the same across a launch's attempts (see the module docstring).
    ``request`` is the plan request of the first attempt without its port; ``previous`` the
    record of the run a ``--resume`` continues; ``hosts`` the host list of an SSH launch;
    ``env`` what ``--env``/``--env-file`` add; ``notes`` the lines the plan view shows."""

    config: LaunchConfig
    train: TrainConfig
    request: PlanRequest
    run_dir: Path
    explicit_run_dir: bool
    previous: RunRecord | None = None
    hosts: tuple[HostSpec, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    notes: Mapping[str, Any] = field(default_factory=dict)
    #: With --rescan: the token that makes the first attempt's workers scan the data again.
    rescan_token: str | None = None

    @property
    def nodes(self) -> tuple[Node, ...]:
        return self.request.nodes

    def plan(self, attempt: int = 0, port: int | None = None) -> LaunchPlan:
        """The complete plan of attempt ``attempt`` (0: the first) with the scheduler on
        ``port``. Every attempt after the first (and every attempt of ``--resume``) continues
        from the run's newest valid checkpoint; the first one starts from
        ``--resume-ckpt``/``--pretrained`` if given."""
        request = dataclasses.replace(
            self.request, run_dir=str(self.run_dir),
            extra_env={**self.request.extra_env, ATTEMPT_ENV: str(self.attempt_number(attempt))},
            sched_port=port, resume=attempt > 0 or self.config.resume is not None,
            worker_args=worker_args(self.config, first=attempt == 0, rescan=self.rescan_token))
        plan = make_plan(request)
        return dataclasses.replace(plan, warnings=self.warnings + plan.warnings)

    def attempt_number(self, attempt: int = 0) -> int:
        """The run's attempt number (1-based, counting a resumed run's earlier attempts) of
        this launch's attempt ``attempt`` (0: the first)."""
        return (self.previous.attempt + 1 if self.previous is not None else 1) + attempt

    def moved_to(self, run_dir: Path) -> LaunchInputs:
        """The same inputs in ``run_dir`` (a default name that was taken got a suffix)."""
        return dataclasses.replace(self, run_dir=run_dir, notes={**self.notes, "run dir": str(run_dir)})

    def without(self, lost: Mapping[str, str]) -> LaunchInputs:
        """The same inputs without the hosts of ``lost`` (a restart under ``--min-devices``)."""
        kept = tuple(n for n in self.nodes if n.host not in lost)
        return dataclasses.replace(
            self, request=dataclasses.replace(self.request, nodes=kept),
            hosts=tuple(h for h in self.hosts if h.name not in lost),
            notes={**self.notes, "hosts": ", ".join(f"{n.host} ({len(n.device_ids)})" for n in kept)})


def worker_args(config: LaunchConfig, first: bool, rescan: str | None = None) -> tuple[str, ...]:
    """Worker flags besides ``--resume-from``: the first attempt of a new run starts from
    ``--resume-ckpt``/``--pretrained`` if given; ``--force`` on every attempt; ``--rescan``
    (the data scanned again, not taken from the run's index) on the first attempt only."""
    args: list[str] = []
    if first and rescan:
        args += ["--rescan", rescan]
    if first and config.resume is None:
        if config.resume_ckpt:
            args += ["--resume-ckpt", str(Path(config.resume_ckpt).resolve())]
        if config.pretrained:
            args += ["--pretrained", str(Path(config.pretrained).resolve())]
    if config.force:
        args.append("--force")
    return tuple(args)
