"""Structured events: the one contract between a training worker and whoever reads its stdout.

A worker writes ordinary log text and, interleaved with it, event lines::

    @wrn {"v":1,"event":"step","rank":0,"time":1732600000.1,"epoch":1,"step":10,...}

The prefix is fixed (``PREFIX``); the rest of the line is one JSON object with at least
``v`` (schema version), ``event`` (one of ``EVENTS``), ``rank`` and ``time`` (UNIX seconds).
Anything that is not an event line is plain log text. This module is the only place that
writes or parses the format: the launcher imports ``parse`` from here, the worker ``emit``.

Events and their fields (besides v, event, rank, time):

``start``       world_size, model, params (trainable parameter count), steps_per_epoch,
                epochs, batch_size (per device), device_target, host, pid, sink_size (steps
                per data-sinking call; 0: one Python call per step)
``step``        (every log_interval steps, an epoch's last step, and the process's first
                step, which ends its start-up for the launcher's stall check; with data
                sinking at the first sink boundary at or after each)
                epoch (1-based), step (1-based within the epoch), global_step, loss, lr,
                imgs_per_s (this rank), data_wait_s (mean seconds per step waiting for data;
                0 with data sinking), step_s (mean seconds per step inside the train step:
                computation plus the wait for the other ranks in the gradient AllReduce)
``epoch_end``   epoch, loss (mean over the epoch), seconds, imgs_per_s, data_wait_s,
                max_rss_mib (this process's peak resident memory so far)
``eval``        epoch, top1, correct, total, loss
``checkpoint``  epoch, step, global_step, path
``finish``      status ("ok"), checksum (of this rank's parameters), seconds, top1 (or null),
                global_step, max_rss_mib
``error``       message, kind (exception type)
``warning``     message, and free-form extra fields (e.g. skipped_files)
``standby``     setup_seconds: a standby worker (``WRN_STANDBY=1``) has joined its cluster and
                built its model, and waits for ``go`` on stdin (``wrn.train.wait_as_standby``)
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, TextIO

PREFIX = "@wrn "
VERSION = 1
EVENTS = frozenset(
    {"start", "step", "epoch_end", "eval", "checkpoint", "finish", "error", "warning", "standby"}
)


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: numpy scalars to Python, NaN/inf to strings."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def format_event(event: str, rank: int, **fields: Any) -> str:
    """Return the event line (without newline) for ``event`` from ``rank``."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; known: {sorted(EVENTS)}")
    record = {"v": VERSION, "event": event, "rank": int(rank), "time": round(time.time(), 3)}
    record.update(_clean(fields))
    return PREFIX + json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def emit(event: str, rank: int, stream: TextIO | None = None, **fields: Any) -> None:
    """Write one event line to ``stream`` (stdout by default) and flush it at once."""
    out = stream if stream is not None else sys.stdout
    out.write(format_event(event, rank, **fields) + "\n")
    out.flush()


def number(value: Any) -> float | None:
    """A finite number from an event field as a float; None for anything else (missing,
    ``true``, a string such as ``"nan"``, infinity). The one reader of numeric event fields."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def whole(value: Any) -> int | None:
    """An integer event (or record) field as an int; None for anything else (``true``, 2.0,
    a string). The one reader of integer fields."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text(value: Any) -> str | None:
    """A string event (or record) field; None for anything else. The one reader of text fields."""
    return value if isinstance(value, str) else None


def parse(line: str) -> dict[str, Any] | None:
    """Return the event dict of an event line, or None for plain log text.

    A line that carries the prefix but is not a valid event (broken JSON, no ``event`` field)
    is treated as plain text rather than raising: a worker's log must never crash its reader.
    """
    if not line.startswith(PREFIX):
        return None
    try:
        record = json.loads(line[len(PREFIX):])
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("event") not in EVENTS:
        return None
    return record
