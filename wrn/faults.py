"""Fault injection, a testing aid: ``WRN_FAULT`` in a worker's environment makes it fail on
purpose, to rehearse what the launcher does about it::

    WRN_FAULT=hang:rank=1:step=5        rank 1 blocks forever before its global step 5
    WRN_FAULT=crash:rank=1:step=5       rank 1 exits with status 1 before its global step 5
    WRN_FAULT=slow:rank=1:factor=3      every step of rank 1 takes 3 times as long

Several faults are separated by commas (``hang:rank=1:step=5,slow:rank=0:factor=2``). Steps
are global steps, counted from 1 across epochs (a resumed run continues the count). Every
fault also takes ``attempt=N``: the run's attempt it fires on, numbered as in run.json (1 is
the first attempt of a run; ``attempt=all``: every attempt). The default is 1, so a restart
under ``--max-restarts`` runs without the fault, as it would after a real one-off failure.

The text is parsed once, when the worker starts (``from_env``); a bad value is a
``ConfigError`` naming the variable and the format. Without ``WRN_FAULT`` nothing here runs:
``from_env`` returns None and no callback joins the training loop.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from wrn.config import ConfigError
from wrn.contract import ATTEMPT_ENV, FAULT_ENV, WarningEvent, emit

KINDS = ("hang", "crash", "slow")
#: Exit status of an injected crash.
CRASH_EXIT = 1
MAX_FACTOR = 1000.0
FORMAT = ("KIND:rank=R:step=S for hang and crash, slow:rank=R:factor=F (F > 1), each optionally "
          "with :attempt=N (default 1) or :attempt=all; several separated by commas, e.g. "
          "hang:rank=1:step=5")


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``kind`` on ``rank`` at global ``step`` (hang, crash) or every step
    slower by ``factor`` (slow), on attempt ``attempt`` (None: every attempt)."""

    kind: str
    rank: int
    step: int | None = None
    factor: float | None = None
    attempt: int | None = 1

    def __str__(self) -> str:
        what = f":step={self.step}" if self.step is not None else f":factor={self.factor:g}"
        when = ":attempt=all" if self.attempt is None else f":attempt={self.attempt}"
        return f"{self.kind}:rank={self.rank}{what}{when}"


def parse_faults(text: str, source: str = FAULT_ENV) -> tuple[Fault, ...]:
    """The faults of a ``WRN_FAULT`` value; ``ConfigError`` (naming ``source``) if malformed."""
    faults = []
    for part in text.split(","):
        if part.strip():
            faults.append(_parse_one(part.strip(), text, source))
    if not faults:
        raise ConfigError(f"{source}={text!r} names no fault; the format is {FORMAT}")
    return tuple(faults)


def _parse_one(part: str, whole: str, source: str) -> Fault:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{source}={whole!r}: {why}; the format is {FORMAT}")

    kind, *fields = part.split(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise bad(f"unknown fault {kind!r} (known: {', '.join(KINDS)})")
    values: dict[str, str] = {}
    for field_text in fields:
        key, eq, value = field_text.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise bad(f"{field_text!r} is not KEY=VALUE")
        if key in values:
            raise bad(f"{key} is given twice in {part!r}")
        values[key] = value.strip()
    allowed = {"rank", "attempt", "factor" if kind == "slow" else "step"}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise bad(f"{kind} takes {', '.join(sorted(allowed))}, not {', '.join(unknown)}")
    if "rank" not in values:
        raise bad(f"{part!r} names no rank (rank=R)")
    rank = _whole(values["rank"], "rank", 0, bad)
    attempt: int | None = 1
    if "attempt" in values:
        attempt = None if values["attempt"].lower() == "all" else _whole(values["attempt"], "attempt", 1, bad)
    if kind == "slow":
        if "factor" not in values:
            raise bad(f"{part!r} names no factor (factor=F)")
        try:
            factor = float(values["factor"])
        except ValueError:
            raise bad(f"factor {values['factor']!r} is not a number") from None
        if not 1.0 < factor <= MAX_FACTOR:  # also refuses nan and inf
            raise bad(f"factor must be more than 1 and at most {MAX_FACTOR:g}, got {values['factor']}")
        return Fault(kind, rank, factor=factor, attempt=attempt)
    if "step" not in values:
        raise bad(f"{part!r} names no step (step=S)")
    return Fault(kind, rank, step=_whole(values["step"], "step", 1, bad), attempt=attempt)


def _whole(text: str, name: str, minimum: int, bad: Any) -> int:
    try:
        value = int(text)
    except ValueError:
        raise bad(f"{name} {text!r} is not a whole number") from None
    if value < minimum:
        raise bad(f"{name} must be {minimum} or more, got {value}")
    return value


def check_ranks(faults: tuple[Fault, ...], world_size: int, source: str = FAULT_ENV) -> None:
    """``ConfigError`` when a fault names a rank the run does not have (it would never fire)."""
    for fault in faults:
        if fault.rank >= world_size:
            raise ConfigError(f"{source}: {fault} names rank {fault.rank}, but this run has "
                              f"{world_size} rank(s) (0-{world_size - 1}); pick one of those")


def from_env(rank: int, environ: Any = None) -> FaultInjector | None:
    """The injector for this rank and attempt, or None (no ``WRN_FAULT``, or none for us)."""
    environ = os.environ if environ is None else environ
    text = environ.get(FAULT_ENV)
    if not text:
        return None
    faults = parse_faults(text)
    attempt_text = environ.get(ATTEMPT_ENV, "1")
    attempt = int(attempt_text) if attempt_text.isascii() and attempt_text.isdigit() else 1
    mine = tuple(f for f in faults if f.rank == rank and f.attempt in (None, attempt))
    return FaultInjector(rank, mine) if mine else None


def _say(text: str) -> None:
    """A plain log line (not an event: a fault must not look like a sign of progress)."""
    print(f"{FAULT_ENV}: {text} (at {time.time():.3f})", flush=True)


class FaultInjector:
    """Fires this rank's faults from the training loop: a ``wrn.loop.Callback`` (the last one,
    so the events and checkpoints of the step before a fault are out first), written out here
    so that the launcher, which checks ``WRN_FAULT`` before a run, does not import numpy."""

    def __init__(self, rank: int, faults: tuple[Fault, ...]) -> None:
        self.rank = rank
        self.at_step = {f.step: f for f in faults if f.step is not None}
        slow = [f.factor for f in faults if f.kind == "slow"]
        self.factor = max(slow) if slow else None
        self.step_times: list[float] = []
        self.announced = False

    def describe(self) -> str:
        faults = list(self.at_step.values())
        return ", ".join(map(str, faults)) + (f" slow x{self.factor:g}" if self.factor else "")

    def announce(self) -> None:
        """A ``warning`` event saying which faults are armed (once, when training begins: an
        event earlier would end the launcher's start-up allowance for this rank)."""
        if not self.announced:
            self.announced = True
            emit(WarningEvent.of(self.rank, message=f"fault injection ({FAULT_ENV}): "
                                                      f"{self.describe()}"))

    def on_epoch_begin(self, state: Any) -> None:
        self.announce()
        self.before_step(state.global_step + 1)

    def on_epoch_end(self, state: Any) -> None:
        pass

    def on_finish(self, state: Any) -> None:
        pass

    def on_event(self, kind: str, fields: dict[str, Any]) -> None:
        pass

    def on_step_end(self, state: Any) -> None:
        if self.factor is not None and state.step_seconds:
            self.slow_down(state.step_seconds)
        if state.step < state.steps_per_epoch:  # the next epoch's first step: on_epoch_begin
            self.before_step(state.global_step + 1)

    def slow_down(self, seconds: float) -> None:
        """Sleep so that a step takes ``factor`` times its usual time (the median of the last
        steps, so that a slow first step, the graph compile, is not multiplied)."""
        history = self.step_times[-10:]
        self.step_times.append(seconds)
        if history:
            time.sleep((self.factor - 1) * min(seconds, statistics.median(history)))

    def before_step(self, step: int) -> None:
        """Hang or crash if a fault is due before global step ``step``."""
        fault = self.at_step.pop(step, None)
        if fault is None:
            return
        if fault.kind == "crash":
            _say(f"rank {self.rank} crashes before step {step} (injected: {fault})")
            sys.stderr.flush()
            os._exit(CRASH_EXIT)
        _say(f"rank {self.rank} hangs before step {step} (injected: {fault})")
        hang_forever()


def hang_forever() -> None:
    """Block this thread for good (signals still end the process as usual)."""
    stop = threading.Event()
    while True:
        stop.wait(3600)
