"""Where every rank is when a run stalls: the stacks the node agents collected (``wrn.stacks``,
``launcher.agent``), written to ``RUN/diagnostics/attempt-<n>/<host>-rank<k>.txt`` and read
into the lines of the root-cause panel.

A hang in data-parallel training looks the same from outside on every rank: each one stops
reporting. Their stacks tell them apart: the healthy ranks wait inside MindSpore (in the train
step, for the gradient AllReduce that needs every rank), the culprit is somewhere else. So the
ranks are grouped by where their main thread is (the innermost frame of the project's own
code, and the library it is inside of, if any), and the rank that is not where the others
are is named: the smallest group; on a tie, the group outside any library call (or not
answering at all), then the one furthest behind.

Pure functions over text; the monitor feeds them ``RankStacks``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from launcher.rundir.layout import path_inside
from launcher.ui.formatting import fmt_span
from wrn.fileio import write_atomic

DIAGNOSTICS_DIR = "diagnostics"
_FRAME = re.compile(r'^\s*File "(?P<file>.*)", line (?P<line>\d+) in (?P<func>.*)$')
_THREAD = re.compile(r"^(Current thread|Thread) 0x[0-9a-fA-F]+")
_LIBRARY_DIRS = ("/site-packages/", "/dist-packages/")


@dataclass(frozen=True)
class Frame:
    file: str
    line: int
    func: str

    @property
    def short(self) -> str:
        """The file as a newcomer knows it: ``wrn/loop.py``, ``mindspore/common/api.py``."""
        path = self.file
        for marker in _LIBRARY_DIRS:
            if marker in path:
                return path.rsplit(marker, 1)[1]
        if "/wrn/" in path:
            return "wrn/" + path.rsplit("/wrn/", 1)[1]
        return "/".join(path.split("/")[-2:])

    @property
    def library(self) -> str | None:
        """The installed package the frame is in (``mindspore``), None for the project's own
        code (``wrn``, even when installed) and for scripts."""
        for marker in _LIBRARY_DIRS:
            if marker in self.file:
                top = self.file.rsplit(marker, 1)[1].split("/", 1)[0]
                return None if top == "wrn" else top
        if self.file.startswith("<frozen ") or re.search(r"/lib/python3\.\d+/", self.file):
            return "python"
        return None

    def __str__(self) -> str:
        return f"{self.func} ({self.short}:{self.line})"


@dataclass(frozen=True)
class RankStacks:
    """What one worker's agent sent back, plus where it was written."""

    rank: int
    host: str
    name: str
    position: str = ""
    stacks: str = ""
    process: str = ""
    error: str | None = None
    pid: int | None = None


def parse_threads(stacks: str) -> list[list[Frame]]:
    """The threads of a faulthandler dump, each a list of frames, innermost first."""
    threads: list[list[Frame]] = []
    for line in stacks.splitlines():
        if _THREAD.match(line):
            threads.append([])
            continue
        match = _FRAME.match(line)
        if match and threads:
            threads[-1].append(Frame(match["file"], int(match["line"]), match["func"].strip()))
    return [t for t in threads if t]


def main_thread(stacks: str) -> list[Frame]:
    """The main thread's frames: the thread not started by ``threading`` (the first one
    listed if that cannot be told)."""
    threads = parse_threads(stacks)
    for frames in threads:
        outer = frames[-1]
        if not (outer.file.endswith("threading.py") and outer.func.startswith("_bootstrap")):
            return frames
    return threads[0] if threads else []


def position_fields(position: str) -> dict[str, str]:
    """``pid=1 epoch=1 step=5 ...`` -> {"pid": "1", ...}; bare words map to ""."""
    out = {}
    for word in position.split():
        key, _, value = word.partition("=")
        out[key] = value
    return out


def describe_position(position: str) -> str | None:
    """``step 5 (epoch 1, 5/18)``, ``end of epoch 1``, ``starting``... (None: unknown)."""
    f = position_fields(position)
    if "global_step" in f and "step" in f:
        return f"step {f['global_step']} (epoch {f.get('epoch', '?')}, {f['step']}/{f.get('steps_per_epoch', '?')})"
    if "end_of_epoch" in f:
        return f"end of epoch {f.get('epoch', '?')} (after step {f.get('global_step', '?')})"
    for word in ("starting", "finishing"):
        if word in f:
            return word + (" (setup, before the first step)" if word == "starting" else "")
    return None


@dataclass(frozen=True)
class Location:
    """Where a rank's main thread is: the innermost frame of the project's code, and the
    innermost frame of the library call it is in (if any)."""

    own: Frame | None
    inner: Frame | None
    library: str | None
    answered: bool = True
    why: str | None = None

    @property
    def key(self) -> tuple:
        if not self.answered:
            return ("no answer",)
        return (self.own.short if self.own else None, self.own.line if self.own else None,
                self.library)

    def text(self) -> str:
        if not self.answered:
            return f"no stacks: {self.why}"
        if self.own is None and self.inner is None and self.why:
            return self.why
        parts = []
        if self.own is not None:
            parts.append(f"in {self.own}")
        if self.library is not None and self.inner is not None:
            parts.append(f"inside {self.library} ({self.inner.short}:{self.inner.line} in "
                         f"{self.inner.func})")
        return ", ".join(parts) or "no Python frames"


def locate(item: RankStacks) -> Location:
    frames = main_thread(item.stacks)
    if not frames:
        why = item.error or "nothing came back"
        return Location(None, None, None, answered=False,
                        why=why + (f"; {item.process}" if item.process else ""))
    own_at = next((i for i, f in enumerate(frames) if f.library is None), len(frames))
    own = frames[own_at] if own_at < len(frames) else None
    # the innermost call into an installed library (the standard library's waits do not count)
    inner = next((f for f in frames[:own_at] if f.library not in (None, "python")), None)
    return Location(own, inner, inner.library if inner else None)


@dataclass
class Diagnosis:
    """The panel's lines and the rank named (None when every rank is in the same place or
    the stacks do not single one out)."""

    lines: list[str] = field(default_factory=list)
    odd_rank: int | None = None
    odd_host: str | None = None


def diagnose(items: list[RankStacks], failed: dict[int, RankStacks] | None = None) -> Diagnosis:
    """Group the ranks by location and name the one that is not where the others are.
    ``failed``: ranks that already failed inside a collective (``error`` says how): they count
    as waiting there."""
    located = {it.rank: (it, locate(it)) for it in items}
    for rank, it in (failed or {}).items():
        located[rank] = (it, Location(None, None, "a collective", why=f"failed in a collective: {it.error}"))
    if not located:
        return Diagnosis(["no stacks came back from any rank"])
    groups: dict[tuple, list[int]] = {}
    for rank, (_, loc) in sorted(located.items()):
        groups.setdefault(loc.key if loc.own or loc.inner or not loc.why else ("failed",), []).append(rank)

    def behind(ranks: list[int]) -> int:
        steps = [position_fields(located[r][0].position).get("global_step", "") for r in ranks]
        numbers = [int(s) for s in steps if s.isdigit()]
        return min(numbers) if numbers else 1 << 60

    def outside(ranks: list[int]) -> bool:
        loc = located[ranks[0]][1]
        return not loc.answered or loc.library is None

    odd: list[int] | None = None
    if len(groups) > 1:
        ordered = sorted(groups.values(), key=lambda rs: (len(rs), not outside(rs), behind(rs)))
        first, second = ordered[0], ordered[1]
        if (len(first), not outside(first), behind(first)) != \
                (len(second), not outside(second), behind(second)):
            odd = first
    lines = []
    for ranks in sorted(groups.values(), key=lambda rs: (rs is not odd, rs[0])):
        item, loc = located[ranks[0]]
        label = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {fmt_span(ranks).replace(',', ', ')}"
        where = describe_position(item.position)
        waiting = odd is not None and ranks is not odd and loc.library is not None and loc.own is not None
        text = f"{label}: " + (f"{where}, " if where else "") + \
            ("waiting " if waiting else "") + loc.text()
        if len(ranks) == 1 and item.host:
            text += f" [{item.host}]"
        lines.append(text)
    if odd is not None and len(odd) == 1:
        rank = odd[0]
        others = [r for r in located if r != rank]
        if others and all(located[r][1].library is not None for r in others):
            lines.append(f"rank {rank} is not where the others are: they wait inside "
                         f"{located[others[0]][1].library} (or gave up there), and a collective "
                         f"such as the gradient AllReduce needs every rank")
        else:
            lines.append(f"rank {rank} is not where the others are")
        return Diagnosis(lines, rank, located[rank][0].host)
    if len(groups) == 1:
        lines.append("every rank is in the same place")
    return Diagnosis(lines)


def stacks_path(run_dir: str | Path, attempt: int, log: str) -> Path | None:
    """``RUN/diagnostics/attempt-<n>/<host>-rank<k>.txt`` for the worker whose log is ``log``
    (None if that would leave the run directory)."""
    name = Path(log).stem + ".txt"
    return path_inside(run_dir, Path(DIAGNOSTICS_DIR) / f"attempt-{attempt}" / name)


def stacks_file_text(item: RankStacks, attempt: int, reason: str) -> str:
    """The text of one rank's diagnostics file."""
    loc = locate(item)
    head = [f"rank {item.rank} on {item.host} (pid {item.pid}), attempt {attempt}, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
            f"why: {reason}",
            f"position: {describe_position(item.position) or item.position or 'unknown'}",
            f"where: {loc.text()}"]
    if item.process:
        head.append(f"process: {item.process}")
    if item.error and loc.answered:
        head.append(f"note: {item.error}")
    body = item.stacks.rstrip() or "(no stacks)"
    return "\n".join(head) + "\n\nPython stacks, every thread (most recent call first):\n" + body + "\n"


def write_stacks(run_dir: str | Path, attempt: int, answers: list[RankStacks], reason: str,
                 logs: Mapping[str, str]) -> list[str]:
    """Each answer to ``diagnostics/attempt-<n>/<host>-rank<k>.txt`` (``logs``: each worker's
    log by name, which names its file); the problems writing them (a full disk)."""
    problems = []
    for item in answers:
        path = stacks_path(run_dir, attempt, logs.get(item.name) or f"{item.name}.log")
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, stacks_file_text(item, attempt, reason))
        except OSError as exc:
            problems.append(f"cannot write {path}: {exc.strerror}")
    return problems
