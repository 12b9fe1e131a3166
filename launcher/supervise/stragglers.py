"""Stragglers: a rank persistently slower than the others.

In synchronous data-parallel training every rank's step takes the same wall time (the gradient
AllReduce waits for the slowest rank), so the wall time per step does not single one out. The
time a rank spends on its own does: each ``step`` event carries ``step_s``, the seconds per
step inside the train step (the rank's computation plus its wait for the others there). The
rank the others wait for waits least, so a rank's own time per step is estimated as

    own = wall time per step - step_s + the smallest step_s of any rank in the same window

(a window: the steps between two consecutive step events, the same on every rank). A rank
whose own time is above ``RATIO`` x the median of the other ranks' in ``WINDOWS`` consecutive
windows is named a straggler. This sees what slows a rank outside the collective (data
loading, host work, another process on its cores); a device that computes slower inside the
step makes every rank wait alike there and is not told apart from its peers.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from wrn.contract import Event, Step

RATIO = 1.5
WINDOWS = 3
#: Windows kept while not every rank has reported them (a rank behind, or one that ended).
MAX_OPEN_WINDOWS = 64


@dataclass
class Straggler:
    """A rank named a straggler: its own time per step over the others' median (latest
    window) and the global step from which it was slow."""

    rank: int
    ratio: float
    since_step: int

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "ratio": round(self.ratio, 2), "since_step": self.since_step}

    def text(self) -> str:
        return (f"rank {self.rank} is a straggler: {self.ratio:.1f}x the other ranks' time per "
                f"step (its own work, outside the wait for others), since step {self.since_step}")


class StragglerCheck:
    """Fed every rank's ``step`` events (``add``); ``named`` holds the stragglers found."""

    def __init__(self, world_size: int, ratio: float = RATIO, windows: int = WINDOWS) -> None:
        self.world_size = world_size
        self.ratio, self.windows = ratio, windows
        self.named: dict[int, Straggler] = {}
        self._last: dict[int, tuple[float, int, Any]] = {}     # rank -> (time, global step, epoch)
        self._open: dict[int, dict[int, tuple[float, float]]] = {}  # step -> rank -> (wall, step_s)
        self._streak: dict[int, tuple[int, int]] = {}         # rank -> (slow windows, first step)
        self._new: list[Straggler] = []

    def add(self, event: Event) -> None:
        """One ``step`` event (other events are ignored); its ``time`` is the worker's own."""
        if not isinstance(event, Step):
            return
        rank, step, at, inside = event.rank, event.global_step, event.time, event.step_s
        if rank is None or step is None or at is None:
            return
        last = self._last.get(rank)
        self._last[rank] = (at, step, event.epoch)
        if last is None or inside is None or step <= last[1] or event.epoch != last[2]:
            return  # the first window of an epoch spans its start (pipeline, eval): not compared
        window = self._open.setdefault(step, {})
        window[rank] = ((at - last[0]) / (step - last[1]), inside)
        if len(window) == self.world_size:
            del self._open[step]
            self._judge(step, window)
        while len(self._open) > MAX_OPEN_WINDOWS:
            del self._open[min(self._open)]

    def _judge(self, step: int, window: dict[int, tuple[float, float]]) -> None:
        if len(window) < 2:
            return
        least_inside = min(inside for _, inside in window.values())
        own = {r: max(wall - inside + least_inside, 0.0) for r, (wall, inside) in window.items()}
        for rank, mine in own.items():
            others = statistics.median(v for r, v in own.items() if r != rank)
            slow = others > 0 and mine > self.ratio * others
            count, since = self._streak.get(rank, (0, step))
            self._streak[rank] = (count + 1, since if count else step) if slow else (0, step)
            if not slow:
                continue
            if rank in self.named:
                self.named[rank].ratio = mine / others
            elif self._streak[rank][0] >= self.windows:
                found = Straggler(rank, mine / others, self._streak[rank][1])
                self.named[rank] = found
                self._new.append(found)

    def take_new(self) -> list[Straggler]:
        """The stragglers named since the last call (each once)."""
        new, self._new = self._new, []
        return new

    def to_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for _, s in sorted(self.named.items())]
