"""What the run's events add up to: progress, throughput, ETA, and the final summary.

Pure bookkeeping over parsed events (``wrn.events``); the supervisor feeds it, renderers and
run.json read it. Nothing here prints or touches files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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

    @property
    def who(self) -> str:
        return f"rank {self.rank}" if self.rank is not None else self.name

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "host": self.host, "rank": self.rank, "reason": self.reason,
                "exit_code": self.exit_code, "signal": self.signal, "log": self.log,
                "error": self.error, "log_tail": list(self.log_tail)}


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

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k not in ("root_cause", "checksums")}
        out["checksums"] = {str(k): v for k, v in self.checksums.items()}
        return out


class RunProgress:
    """Accumulates worker events into the numbers a progress view and a summary need."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.start: dict[int, dict] = {}
        self.last_step: dict[int, dict] = {}
        self.epoch_ends: dict[int, dict[int, dict]] = {}   # epoch -> rank -> event
        self.evals: list[dict] = []
        self.checkpoints: list[dict] = []
        self.finish: dict[int, dict] = {}
        self.errors: dict[int, dict] = {}
        self._first_step: tuple[float, int] | None = None
        self._last_step_at: tuple[float, int] | None = None

    # -- feeding ------------------------------------------------------------------------------
    def update(self, record: dict[str, Any], now: float) -> None:
        """Take one event (as parsed by ``wrn.events.parse``)."""
        kind, rank = record.get("event"), record.get("rank")
        if not isinstance(rank, int):
            return
        if kind == "start":
            self.start[rank] = record
        elif kind == "step":
            self.last_step[rank] = record
            g = record.get("global_step")
            if isinstance(g, int):
                if self._first_step is None:
                    self._first_step = (now, g)
                if self._last_step_at is None or g > self._last_step_at[1]:
                    self._last_step_at = (now, g)
        elif kind == "epoch_end" and isinstance(record.get("epoch"), int):
            self.epoch_ends.setdefault(record["epoch"], {})[rank] = record
        elif kind == "eval" and rank == 0:
            self.evals.append(record)
        elif kind == "checkpoint" and rank == 0:
            self.checkpoints.append(record)
        elif kind == "finish":
            self.finish[rank] = record
        elif kind == "error":
            self.errors[rank] = record

    # -- progress -----------------------------------------------------------------------------
    def _start_field(self, name: str) -> Any:
        for rank in sorted(self.start):
            value = self.start[rank].get(name)
            if value is not None:
                return value
        return None

    @property
    def total_steps(self) -> int | None:
        epochs, per_epoch = self._start_field("epochs"), self._start_field("steps_per_epoch")
        if isinstance(epochs, int) and isinstance(per_epoch, int) and epochs * per_epoch > 0:
            return epochs * per_epoch
        return None

    @property
    def epochs(self) -> int | None:
        return self._start_field("epochs")

    @property
    def done_steps(self) -> int:
        return max((r.get("global_step") or 0 for r in self.last_step.values()), default=0)

    @property
    def epoch(self) -> int | None:
        return max((r.get("epoch") or 0 for r in self.last_step.values()), default=None)

    @property
    def loss(self) -> float | None:
        rec = self.last_step.get(0) or next(iter(self.last_step.values()), None)
        return _num(rec.get("loss")) if rec else None

    @property
    def imgs_per_s(self) -> float | None:
        """Current throughput of the whole job: mean over reporting ranks x world size."""
        values = [v for v in (_num(r.get("imgs_per_s")) for r in self.last_step.values()) if v]
        return sum(values) / len(values) * self.world_size if values else None

    def eta_s(self, now: float) -> float | None:
        """Seconds left, from the step rate since the first step event."""
        total = self.total_steps
        if total is None or self._first_step is None or self._last_step_at is None:
            return None
        (t0, g0), (t1, g1) = self._first_step, self._last_step_at
        if g1 <= g0 or t1 <= t0:
            return None
        left = (total - g1) * (t1 - t0) / (g1 - g0) - (now - t1)
        return max(0.0, left)

    # -- summary ------------------------------------------------------------------------------
    def final_imgs_per_s(self) -> float | None:
        """Whole-job training throughput: per-epoch mean x world size, averaged over the epochs
        after the first (which includes graph compilation) when there are several."""
        per_epoch = []
        for epoch in sorted(self.epoch_ends):
            values = [v for v in (_num(r.get("imgs_per_s")) for r in self.epoch_ends[epoch].values()) if v]
            if values:
                per_epoch.append(sum(values) / len(values) * self.world_size)
        if len(per_epoch) > 1:
            per_epoch = per_epoch[1:]
        return sum(per_epoch) / len(per_epoch) if per_epoch else self.imgs_per_s

    def final_loss(self) -> float | None:
        for epoch in sorted(self.epoch_ends, reverse=True):
            recs = self.epoch_ends[epoch]
            rec = recs.get(0) or next(iter(recs.values()))
            if _num(rec.get("loss")) is not None:
                return _num(rec.get("loss"))
        return self.loss

    def top1(self) -> float | None:
        rec = self.finish.get(0)
        if rec and _num(rec.get("top1")) is not None:
            return _num(rec.get("top1"))
        for rec in reversed(self.evals):
            if _num(rec.get("top1")) is not None:
                return _num(rec.get("top1"))
        return None

    def best_checkpoint(self) -> str | None:
        """The checkpoint of the epoch with the best evaluation, else the newest one."""
        if not self.checkpoints:
            return None
        by_epoch = {c.get("epoch"): c for c in self.checkpoints}
        scored = [(e.get("top1"), e.get("epoch")) for e in self.evals
                  if _num(e.get("top1")) is not None and e.get("epoch") in by_epoch]
        if scored:
            return by_epoch[max(scored, key=lambda t: (t[0], t[1]))[1]].get("path")
        return self.checkpoints[-1].get("path")

    def replicas_in_sync(self) -> bool | None:
        """True if every rank finished with the same parameter checksum; None if not all finished."""
        sums = [self.finish[r].get("checksum") for r in range(self.world_size) if r in self.finish]
        if len(sums) < self.world_size or any(s is None for s in sums):
            return None
        return len({repr(s) for s in sums}) == 1
