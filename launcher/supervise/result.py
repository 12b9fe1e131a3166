"""What an attempt comes to: its state and exit code, the root cause that is blamed for a
failure, and the summary shown at the end and stored in run.json.

Exit status of an attempt: 0 succeeded, 1 failed, 128+N interrupted by signal N.
"""

from __future__ import annotations

import enum
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.agent.proc import signal_name
from wrn.contract import number

if TYPE_CHECKING:
    from launcher.rundir.record import RunRecord
    from launcher.supervise.progress import RunProgress


class RunState(enum.Enum):
    """How an attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    PREEMPTED = "preempted"      # SIGTERM or SIGUSR1 inside a Slurm job (scancel, requeue, time limit)


def interrupted_state(signum: int) -> RunState:
    """PREEMPTED for SIGTERM/SIGUSR1 inside a Slurm job (the workers then write a step
    checkpoint: ``wrn.loop.StopOnSignal``), else INTERRUPTED."""
    if signum in (signal.SIGTERM, signal.SIGUSR1) and os.environ.get("SLURM_JOB_ID"):
        return RunState.PREEMPTED
    return RunState.INTERRUPTED


@dataclass
class RootCause:
    """The first failure of a run, the one that is blamed."""

    name: str
    host: str
    rank: int | None
    reason: str
    exit_code: int | None = None
    signal: str | None = None
    log: str | None = None
    log_tail: list[str] = field(default_factory=list)
    error: str | None = None
    where: list[str] = field(default_factory=list)     # a stall: where every rank was
    diagnostics: str | None = None                      # ... and the folder of their stacks

    @property
    def who(self) -> str:
        return f"rank {self.rank}" if self.rank is not None else self.name

    @classmethod
    def of(cls, proc: Any, reason: str, error: str | None = None) -> RootCause:
        """``proc`` (a ``ProcessState``) failed for ``reason``; ``error``: its error event."""
        return cls(name=proc.name, host=proc.host, rank=proc.rank, reason=reason,
                   exit_code=proc.exit_code, signal=proc.signal, log=proc.log,
                   log_tail=list(proc.tail), error=error or proc.error)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "host": self.host, "rank": self.rank, "reason": self.reason,
               "exit_code": self.exit_code, "signal": self.signal, "log": self.log,
               "error": self.error, "log_tail": list(self.log_tail)}
        if self.where or self.diagnostics:
            out.update(where=list(self.where), diagnostics=self.diagnostics)
        return out


@dataclass
class RunSummary:
    """The end of a run, as shown in the final table and stored in run.json."""

    status: str
    exit_code: int
    run_dir: str
    wall_s: float
    imgs_per_s: float | None = None
    final_loss: float | None = None
    top1: float | None = None
    best_checkpoint: str | None = None
    replicas_in_sync: bool | None = None
    checksums: dict[int, Any] = field(default_factory=dict)
    root_cause: RootCause | None = None
    note: str | None = None
    stragglers: list[dict[str, Any]] = field(default_factory=list)
    hosts_dropped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k not in ("root_cause", "checksums")}
        out["checksums"] = {str(k): v for k, v in self.checksums.items()}
        return out


@dataclass(frozen=True)
class RunResult:
    """What one attempt came to: its state and exit code, the summary shown at the end, every
    process that failed (by name: rank k's worker is ``rank<k>``), and the final run record."""

    state: RunState
    exit_code: int
    summary: RunSummary
    record: RunRecord
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def root_cause(self) -> RootCause | None:
        return self.summary.root_cause

    def failure_reason(self) -> str:
        """One line naming who failed, where and how (the restart reason in run.json)."""
        cause = self.root_cause
        if cause is None:
            return self.summary.note or "a worker failed"
        return f"{cause.who} on {cause.host}: {cause.reason}"


def outcome(interrupted: int | None, failed: bool, all_succeeded: bool) -> tuple[RunState, int, str | None]:
    """(state, exit code, note) of an attempt that ended: interrupted by a signal (128 + its
    number), failed (a root cause), succeeded (every worker did), else failed all the same."""
    if interrupted is not None:
        return interrupted_state(interrupted), 128 + interrupted, f"by {signal_name(interrupted)}"
    if failed:
        return RunState.FAILED, 1, None
    if all_succeeded:
        return RunState.SUCCEEDED, 0, None
    return RunState.FAILED, 1, "not every worker succeeded"


def summarize(state: RunState, code: int, note: str | None, run_dir: Path, wall_s: float,
              progress: RunProgress, root_cause: RootCause | None,
              hosts_dropped: list[str]) -> RunSummary:
    """The summary of an attempt from what its events added up to (the final top-1 falls back
    to rank 0's eval.json)."""
    top1 = progress.top1()
    return RunSummary(
        status=state.value, exit_code=code, run_dir=str(run_dir), wall_s=wall_s,
        imgs_per_s=progress.final_imgs_per_s(), final_loss=progress.final_loss(),
        top1=top1 if top1 is not None else _eval_json_top1(run_dir / "eval.json"),
        best_checkpoint=progress.best_checkpoint(), replicas_in_sync=progress.replicas_in_sync(),
        checksums=progress.checksums(), root_cause=root_cause, note=note,
        stragglers=progress.stragglers.to_list(), hosts_dropped=hosts_dropped)


def _eval_json_top1(path: Path) -> float | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("top1")
    except (OSError, ValueError, AttributeError):
        return None
    return number(value)
