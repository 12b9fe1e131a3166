"""What the run's events add up to: progress, throughput, ETA, and the final summary.

Pure bookkeeping over parsed events (``wrn.contract``); the supervisor feeds it, renderers and
run.json read it. Nothing here prints or touches files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from launcher.supervise.stragglers import StragglerCheck
from wrn.contract import number


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
        self.stragglers = StragglerCheck(world_size)

    # -- feeding ------------------------------------------------------------------------------
    def update(self, record: dict[str, Any], now: float) -> None:
        """Take one event (as parsed by ``wrn.contract.parse_record``)."""
        kind, rank = record.get("event"), record.get("rank")
        if not isinstance(rank, int):
            return
        if kind == "start":
            self.start[rank] = record
        elif kind == "step":
            self.last_step[rank] = record
            self.stragglers.add(record)
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
        return number(rec.get("loss")) if rec else None

    @property
    def imgs_per_s(self) -> float | None:
        """Current throughput of the whole job: mean over reporting ranks x world size."""
        values = [v for v in (number(r.get("imgs_per_s")) for r in self.last_step.values()) if v]
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
            values = [v for v in (number(r.get("imgs_per_s")) for r in self.epoch_ends[epoch].values()) if v]
            if values:
                per_epoch.append(sum(values) / len(values) * self.world_size)
        if len(per_epoch) > 1:
            per_epoch = per_epoch[1:]
        return sum(per_epoch) / len(per_epoch) if per_epoch else self.imgs_per_s

    def final_loss(self) -> float | None:
        """Mean over the ranks of the last epoch's loss (each rank's newest report of it), else
        the latest step's loss."""
        for epoch in sorted(self.epoch_ends, reverse=True):
            losses = [v for v in (number(r.get("loss")) for r in self.epoch_ends[epoch].values())
                      if v is not None]
            if losses:
                return sum(losses) / len(losses)
        return self.loss

    def top1(self) -> float | None:
        rec = self.finish.get(0)
        if rec and number(rec.get("top1")) is not None:
            return number(rec.get("top1"))
        for rec in reversed(self.evals):
            if number(rec.get("top1")) is not None:
                return number(rec.get("top1"))
        return None

    def best_checkpoint(self) -> str | None:
        """The checkpoint of the epoch with the best evaluation, else the newest one."""
        if not self.checkpoints:
            return None
        by_epoch = {c.get("epoch"): c for c in self.checkpoints}
        scored = [(e.get("top1"), e.get("epoch")) for e in self.evals
                  if number(e.get("top1")) is not None and e.get("epoch") in by_epoch]
        if scored:
            return by_epoch[max(scored, key=lambda t: (t[0], t[1]))[1]].get("path")
        return self.checkpoints[-1].get("path")

    def replicas_in_sync(self) -> bool | None:
        """True if every rank finished with the same parameter checksum; None if not all finished."""
        sums = [self.finish[r].get("checksum") for r in range(self.world_size) if r in self.finish]
        if len(sums) < self.world_size or any(s is None for s in sums):
            return None
        return len({repr(s) for s in sums}) == 1


# -- the live view's bookkeeping ---------------------------------------------------------------------
#: A rank whose throughput is below this fraction of the median is shown as slow.
SLOW_FRACTION = 0.6
#: A rank silent for this many times the median silence (and at least QUIET_MIN_S) is shown quiet.
QUIET_FACTOR = 3.0
QUIET_MIN_S = 10.0
MAX_WARNINGS = 50


@dataclass
class RankView:
    """What the live view shows about one rank. ``last_event`` is the wall time the launcher
    received the rank's latest event; ``rss`` is in bytes (None when not readable)."""

    rank: int
    host: str
    device: int | None = None
    pid: int | None = None
    state: str = "waiting"
    epoch: int | None = None
    step: int | None = None
    steps_per_epoch: int | None = None
    global_step: int | None = None
    loss: float | None = None
    imgs_per_s: float | None = None
    last_event: float | None = None
    started: float | None = None
    rss: int | None = None
    exit_code: int | None = None
    signal: str | None = None

    @property
    def ended(self) -> bool:
        """The rank's process has exited (or was never going to report again)."""
        return self.state in ("done", "failed", "killed", "stopped")


class LiveState:
    """Everything a live dashboard shows, fed by the renderer's callbacks (or ``replay``).

    Times are explicit (``now`` arguments) so a recorded event stream replays to exactly the
    view a user saw. ``stall_after`` is the supervisor's --stall-timeout: a running rank silent
    that long is shown stalled.
    """

    def __init__(self, name: str = "", backend: str = "", ranks: Any = (), *,
                 stall_after: float = 300.0, t0: float | None = None) -> None:
        self.name = name
        self.backend = backend
        self.stall_after = stall_after
        self.ranks: dict[int, RankView] = {}
        for item in ranks:
            rank, host, device = item
            self.ranks[rank] = RankView(rank=rank, host=host, device=device)
        self.t0 = t0
        self.attempt = 1
        self.progress = RunProgress(max(len(self.ranks), 1))
        self.warnings: list[tuple[float, str]] = []
        self.skipped_files: dict[int, int] = {}
        self.stall_warnings = 0
        self.finished_status: str | None = None
        self._changes = 0  # counts every change, so derived values are recomputed after one
        self._derived_key: tuple | None = None
        self._derived_value: tuple[float, float | None, int] = (QUIET_MIN_S, None, 0)

    @classmethod
    def from_plan(cls, plan: Any, run_dir: str, *, stall_after: float = 300.0,
                  t0: float | None = None) -> "LiveState":
        """A state for ``plan`` (a ``cluster.plan.LaunchPlan``) running in ``run_dir``."""
        import os
        ranks = [(r.rank, r.host, r.device_id) for r in plan.ranks]
        state = cls(os.path.basename(os.path.normpath(run_dir)), plan.backend, ranks,
                    stall_after=stall_after, t0=t0)
        state.progress = RunProgress(plan.world_size)
        return state

    # -- feeding --------------------------------------------------------------------------------
    @property
    def world_size(self) -> int:
        """Ranks in the whole job."""
        return self.progress.world_size

    @property
    def hosts(self) -> list[str]:
        """Host names in rank order."""
        return list(dict.fromkeys(v.host for v in sorted(self.ranks.values(), key=lambda v: v.rank)))

    def _view(self, rank: int, host: str | None = None) -> RankView:
        self._changes += 1  # every change to a rank goes through here
        view = self.ranks.get(rank)
        if view is None:
            view = self.ranks[rank] = RankView(rank=rank, host=host or "?")
        elif host and view.host == "?":
            view.host = host
        return view

    def restarted(self, now: float) -> None:
        """A new attempt of the same run begins: ranks start over, warnings are kept."""
        self.attempt += 1
        self._changes += 1
        self.progress = RunProgress(self.world_size)
        for view in self.ranks.values():
            keep = (view.rank, view.host, view.device)
            self.ranks[view.rank] = RankView(rank=keep[0], host=keep[1], device=keep[2])
        self.add_warning(now, f"restart {self.attempt - 1}: attempt {self.attempt} started")

    def process_started(self, rank: int | None, host: str, pid: int, now: float) -> None:
        """A worker process is running (``rank`` None: the scheduler, not shown per rank)."""
        if rank is None:
            return
        view = self._view(rank, host)
        view.pid, view.state, view.started = pid, "starting", now
        view.exit_code = view.signal = None

    def process_exited(self, rank: int | None, exit_code: int | None, signal: str | None,
                       expected: bool, now: float) -> None:
        """A worker process ended."""
        if rank is None:
            return
        view = self._view(rank)
        view.exit_code, view.signal, view.rss = exit_code, signal, None
        if exit_code == 0:
            view.state = "done"
        elif expected:
            view.state = "stopped"
        else:
            view.state = "killed" if signal else "failed"

    def event(self, host: str, record: dict[str, Any], now: float,
              progress: RunProgress | None = None) -> None:
        """One worker event, received at ``now``. ``progress`` is the supervisor's RunProgress
        (already updated); without it this state keeps its own."""
        if progress is not None:
            self.progress = progress
        else:
            self.progress.update(record, now)
        rank = record.get("rank")
        if not isinstance(rank, int):
            return
        if self.t0 is None:
            self.t0 = now
        view = self._view(rank, record.get("host") or host)
        view.last_event = now
        kind = record.get("event")
        if view.state in ("waiting", "starting") and kind in ("start", "step", "epoch_end"):
            view.state = "training"
        if kind == "start":
            view.pid = record.get("pid") if isinstance(record.get("pid"), int) else view.pid
            view.steps_per_epoch = record.get("steps_per_epoch")
            if isinstance(record.get("start_epoch"), int) and record["start_epoch"] > 0:
                view.epoch = record["start_epoch"]
        elif kind == "step":
            view.epoch, view.step = record.get("epoch"), record.get("step")
            view.global_step = record.get("global_step")
            view.steps_per_epoch = record.get("steps_per_epoch") or view.steps_per_epoch
            view.loss, view.imgs_per_s = number(record.get("loss")), number(record.get("imgs_per_s"))
        elif kind == "finish":
            if not view.ended:
                view.state = "finished"
        elif kind == "error":
            view.state = "failed"
            self.add_warning(now, f"rank {rank}: {record.get('kind') or 'error'}: {record.get('message')}")
        elif kind == "warning":
            skipped = record.get("skipped_files")
            if isinstance(skipped, int):
                self.skipped_files[rank] = skipped
            self.add_warning(now, f"rank {rank}: {record.get('message')}")

    def message(self, level: str, text: str, now: float) -> None:
        """A launcher note; warnings and errors are kept for the warnings panel."""
        if level in ("warning", "error"):
            if "looks stalled" in text:
                self.stall_warnings += 1
            self.add_warning(now, text)

    def add_warning(self, now: float, text: str) -> None:
        """Keep a warning for the dashboard (the newest MAX_WARNINGS)."""
        self.warnings.append((now, text))
        del self.warnings[:-MAX_WARNINGS]

    def replay(self, records: Any, until: float | None = None) -> float:
        """Feed recorded events (as in metrics.jsonl) in order, each at its own ``time``, up to
        ``until``; the ranks count as started at their first event. Returns the last time fed."""
        last = self.t0 or 0.0
        for record in records:
            at = record.get("time")
            if not isinstance(at, (int, float)):
                continue
            if until is not None and at > until:
                break
            rank = record.get("rank")
            if isinstance(rank, int) and self._view(rank, record.get("host")).state == "waiting":
                self.process_started(rank, record.get("host") or "?", record.get("pid") or 0, at)
            self.event(record.get("host") or "?", record, at)
            last = at
        return last

    # -- derived --------------------------------------------------------------------------------
    def quiet_s(self, view: RankView, now: float) -> float | None:
        """Seconds since the rank's last event (since its start when it has sent none)."""
        since = view.last_event if view.last_event is not None else view.started
        if since is None or view.ended or view.state == "finished":
            return None
        return max(0.0, now - since)

    def is_stalled(self, view: RankView, now: float) -> bool:
        """A running rank silent for ``stall_after`` seconds (the supervisor warns then too)."""
        quiet = self.quiet_s(view, now)
        return (quiet is not None and view.state in ("training", "starting")
                and view.last_event is not None and quiet >= self.stall_after)

    def quiet_limit(self, now: float) -> float:
        """Silence above this is highlighted: QUIET_FACTOR x the median silence, at least
        QUIET_MIN_S seconds."""
        return self._derived(now)[0]

    def median_imgs_per_s(self) -> float | None:
        """Median throughput of the ranks that are training (None before any reports)."""
        values = sorted(v.imgs_per_s for v in self.ranks.values()
                        if v.imgs_per_s is not None and v.state == "training")
        if not values:
            return None
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    def _derived(self, now: float) -> tuple[float, float | None, int]:
        """(quiet limit, median throughput, ranks reporting throughput) at ``now``: computed
        once per render (one pass over the ranks), not once per rank shown."""
        key = (now, len(self.ranks), self._changes)
        if self._derived_key != key:
            values = sorted(q for q in (self.quiet_s(v, now) for v in self.ranks.values())
                            if q is not None)
            median = values[len(values) // 2] if values else 0.0
            reporting = sum(1 for v in self.ranks.values() if v.imgs_per_s is not None)
            self._derived_value = (max(QUIET_MIN_S, QUIET_FACTOR * median),
                                   self.median_imgs_per_s(), reporting)
            self._derived_key = key
        return self._derived_value

    def is_slow(self, view: RankView, now: float | None = None) -> bool:
        """A training rank named a straggler (``launcher.supervise.stragglers``), or whose throughput is
        below SLOW_FRACTION of the training ranks' median."""
        if now is None:
            median, reporting = self.median_imgs_per_s(), sum(
                1 for v in self.ranks.values() if v.imgs_per_s is not None)
        else:
            _, median, reporting = self._derived(now)
        if view.rank in self.progress.stragglers.named and view.state == "training":
            return True
        return (median is not None and view.imgs_per_s is not None and view.state == "training"
                and reporting > 1 and view.imgs_per_s < SLOW_FRACTION * median)

    def problem(self, view: RankView, now: float) -> str | None:
        """``"stalled"``, ``"failed"``, ``"slow"``, ``"quiet"`` or None: why a rank deserves a look."""
        if view.state in ("failed", "killed"):
            return "failed"
        if self.is_stalled(view, now):
            return "stalled"
        if self.is_slow(view, now):
            return "slow"
        quiet = self.quiet_s(view, now)
        if quiet is not None and view.last_event is not None and quiet > self.quiet_limit(now):
            return "quiet"
        return None

    def aggregate_imgs_per_s(self, now: float | None = None) -> float | None:
        """Sum of the latest throughput of every rank still training (and, given ``now``,
        not stalled)."""
        values = [v.imgs_per_s for v in self.ranks.values()
                  if v.imgs_per_s is not None and v.state in ("training", "starting")
                  and (now is None or not self.is_stalled(v, now))]
        return sum(values) if values else None

    def latest_eval(self) -> dict | None:
        """The newest evaluation event (rank 0's), if any."""
        return self.progress.evals[-1] if self.progress.evals else None

    def elapsed(self, now: float) -> float | None:
        """Seconds since the run started (None before it did)."""
        return None if self.t0 is None else max(0.0, now - self.t0)
