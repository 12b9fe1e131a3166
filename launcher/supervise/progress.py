"""What the run's events add up to: progress, throughput, ETA, and the final summary numbers.

Pure bookkeeping over typed events (``wrn.contract``); the monitor feeds it (through the run's
``RunBoard``), and so does ``LoadedRun.progress`` for a run read back from its metrics.jsonl,
so a finished run and one whose launcher was killed are summed up the same way. Nothing here
prints or touches files.
"""

from __future__ import annotations

from typing import Any

from launcher.supervise.stragglers import StragglerCheck
from wrn.contract import Checkpoint, EpochEnd, Error, Eval, Event, Finish, Start, Step


class RunProgress:
    """Accumulates worker events into the numbers a progress view and a summary need."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.start: dict[int, Start] = {}
        self.last_step: dict[int, Step] = {}
        self.epoch_ends: dict[int, dict[int, EpochEnd]] = {}   # epoch -> rank -> event
        self.evals: list[Eval] = []
        self.checkpoints: list[Checkpoint] = []
        self.finish: dict[int, Finish] = {}
        self.errors: dict[int, Error] = {}
        self._first_step: tuple[float, int] | None = None
        self._last_step_at: tuple[float, int] | None = None
        self.stragglers = StragglerCheck(world_size)

    # -- feeding ------------------------------------------------------------------------------
    def update(self, event: Event, now: float) -> None:
        """Take one event (``now``: when it arrived, on the clock ``eta_s`` is asked with)."""
        rank = event.rank
        if not isinstance(rank, int):
            return
        if isinstance(event, Start):
            self.start[rank] = event
        elif isinstance(event, Step):
            self.last_step[rank] = event
            self.stragglers.add(event)
            g = event.global_step
            if g is not None:
                if self._first_step is None:
                    self._first_step = (now, g)
                if self._last_step_at is None or g > self._last_step_at[1]:
                    self._last_step_at = (now, g)
        elif isinstance(event, EpochEnd) and event.epoch is not None:
            self.epoch_ends.setdefault(event.epoch, {})[rank] = event
        elif isinstance(event, Eval) and rank == 0:
            self.evals.append(event)
        elif isinstance(event, Checkpoint) and rank == 0:
            self.checkpoints.append(event)
        elif isinstance(event, Finish):
            self.finish[rank] = event
        elif isinstance(event, Error):
            self.errors[rank] = event

    # -- progress -----------------------------------------------------------------------------
    def _start_field(self, name: str) -> Any:
        for rank in sorted(self.start):
            value = getattr(self.start[rank], name)
            if value is not None:
                return value
        return None

    @property
    def total_steps(self) -> int | None:
        epochs, per_epoch = self._start_field("epochs"), self._start_field("steps_per_epoch")
        if epochs is not None and per_epoch is not None and epochs * per_epoch > 0:
            return epochs * per_epoch
        return None

    @property
    def epochs(self) -> int | None:
        return self._start_field("epochs")

    @property
    def done_steps(self) -> int:
        return max((r.global_step or 0 for r in self.last_step.values()), default=0)

    @property
    def epoch(self) -> int | None:
        return max((r.epoch or 0 for r in self.last_step.values()), default=None)

    @property
    def loss(self) -> float | None:
        rec = self.last_step.get(0) or next(iter(self.last_step.values()), None)
        return rec.loss if rec else None

    @property
    def imgs_per_s(self) -> float | None:
        """Current throughput of the whole job: mean over reporting ranks x world size."""
        values = [r.imgs_per_s for r in self.last_step.values() if r.imgs_per_s]
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
            values = [r.imgs_per_s for r in self.epoch_ends[epoch].values() if r.imgs_per_s]
            if values:
                per_epoch.append(sum(values) / len(values) * self.world_size)
        if len(per_epoch) > 1:
            per_epoch = per_epoch[1:]
        return sum(per_epoch) / len(per_epoch) if per_epoch else self.imgs_per_s

    def final_loss(self) -> float | None:
        """Mean over the ranks of the last epoch's loss (each rank's newest report of it), else
        the latest step's loss."""
        for epoch in sorted(self.epoch_ends, reverse=True):
            losses = [r.loss for r in self.epoch_ends[epoch].values() if r.loss is not None]
            if losses:
                return sum(losses) / len(losses)
        return self.loss

    def top1(self) -> float | None:
        rec = self.finish.get(0)
        if rec and rec.top1 is not None:
            return rec.top1
        for ev in reversed(self.evals):
            if ev.top1 is not None:
                return ev.top1
        return None

    def best_checkpoint(self) -> str | None:
        """The checkpoint of the epoch with the best evaluation, else the newest one."""
        if not self.checkpoints:
            return None
        by_epoch = {c.epoch: c for c in self.checkpoints}
        scored = [(e.top1, e.epoch) for e in self.evals if e.top1 is not None and e.epoch in by_epoch]
        if scored:
            return by_epoch[max(scored, key=lambda t: (t[0], t[1]))[1]].path
        return self.checkpoints[-1].path

    def replicas_in_sync(self) -> bool | None:
        """True if every rank finished with the same parameter checksum; None if not all finished."""
        sums = [self.finish[r].checksum for r in range(self.world_size) if r in self.finish]
        if len(sums) < self.world_size or any(s is None for s in sums):
            return None
        return len({repr(s) for s in sums}) == 1

    def checksums(self) -> dict[int, Any]:
        """Each finished rank's parameter checksum."""
        return {r: f.checksum for r, f in sorted(self.finish.items())}

    def error_text(self, rank: int | None) -> str | None:
        """``"RuntimeError: boom"`` from the rank's error event, if it sent one."""
        err = self.errors.get(rank) if rank is not None else None
        return f"{err.error_kind or 'error'}: {err.message}" if err else None

    def position(self, rank: int | None) -> str:
        """A position line (as ``wrn.stacks`` writes it) from the rank's last step event."""
        step = self.last_step.get(rank) if rank is not None else None
        if step is None or step.global_step is None:
            return ""
        start = self.start.get(rank)
        per_epoch = step.steps_per_epoch or (start.steps_per_epoch if start else None) or "?"
        return (f"epoch={step.epoch} step={step.step} global_step={step.global_step} "
                f"steps_per_epoch={per_epoch}")
