"""What an attempt comes to: the root cause that is blamed for a failure, and the summary shown
at the end and stored in run.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
