"""The open files of a running run: each process's log and metrics.jsonl, and the writes into the
run directory that failed (a full disk) without stopping supervision."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, TextIO

from launcher.rundir.layout import LOG_DIR, METRICS


def _end_torn_line(path: Path) -> None:
    """Append a newline to ``path`` when its last line is torn (a crash mid-write, a full disk),
    so that the next line written starts on a line of its own."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
    except FileNotFoundError:
        return
    if torn:
        with open(path, "ab") as fh:
            fh.write(b"\n")


def free_space(path: Path) -> str:
    """The free space of the file system holding ``path``, for a message ("12.0 KiB")."""
    try:
        free = float(shutil.disk_usage(path).free)
    except OSError:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.0f} B" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    return "unknown"  # not reached


class WriteTrouble:
    """Writes into the run directory that failed (a full disk, a quota, an I/O error).

    The launcher keeps supervising when it cannot write: the workers keep training, and a log
    line, an event or a run.json update that cannot be written is lost (run.json is written
    again at the next change). The first failure becomes one warning naming the file and the
    free space (``take_warning``); ``lost`` counts every failed write.
    """

    def __init__(self) -> None:
        self.lost = 0
        self._warning: str | None = None
        self._warned = False

    def failed(self, path: Path, exc: OSError) -> None:
        """Note one failed write of ``path``."""
        self.lost += 1
        if self._warning is None and not self._warned:
            self._warning = (f"cannot write {path} ({exc.strerror or exc}; {free_space(path.parent)} "
                             f"free there): the run goes on, but log lines, events and run.json "
                             f"updates are lost until space is freed")

    def take_warning(self) -> str | None:
        """The warning about the first failure, once; None before a failure and after."""
        warning, self._warning = self._warning, None
        if warning is not None:
            self._warned = True
        return warning


class RunFiles:
    """Open files of a running run: per-process logs and metrics.jsonl (line buffered).

    A write that fails (``OSError``: a full disk) is noted in ``trouble`` and dropped; it never
    stops supervision."""

    def __init__(self, root: Path, trouble: WriteTrouble | None = None) -> None:
        self.root = Path(root)
        self.trouble = trouble or WriteTrouble()
        self._logs: dict[str, TextIO | None] = {}
        self._metrics: TextIO | None = None
        try:
            (self.root / LOG_DIR).mkdir(parents=True, exist_ok=True)
            _end_torn_line(self.root / METRICS)
            self._metrics = open(self.root / METRICS, "a", encoding="utf-8", buffering=1)
        except OSError as exc:
            self.trouble.failed(self.root / METRICS, exc)

    def log(self, rel: str, line: str) -> None:
        """Append one line to the log at ``rel`` (relative to the run directory)."""
        self._write(self.open_log(rel), self.root / rel, line + "\n")

    def open_log(self, rel: str) -> TextIO | None:
        """The open log file at ``rel``, created on first use (None if it cannot be)."""
        if rel in self._logs:
            return self._logs[rel]
        path = self.root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a", encoding="utf-8", errors="replace", buffering=1)
        except OSError as exc:
            self.trouble.failed(path, exc)
            fh = None
        self._logs[rel] = fh
        return fh

    def metric(self, record: dict[str, Any]) -> None:
        """Append one event to metrics.jsonl."""
        self._write(self._metrics, self.root / METRICS,
                    json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")

    def _write(self, fh: TextIO | None, path: Path, text: str) -> None:
        if fh is None:
            self.trouble.lost += 1
            return
        try:
            fh.write(text)
        except OSError as exc:
            self.trouble.failed(path, exc)

    def close(self) -> None:
        for path, fh in [(self.root / rel, fh) for rel, fh in self._logs.items()] + \
                [(self.root / METRICS, self._metrics)]:
            if fh is None:
                continue
            try:
                fh.close()
            except OSError as exc:  # the last buffered line could not be written
                self.trouble.failed(path, exc)
        self._logs.clear()
        self._metrics = None
