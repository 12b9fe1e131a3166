"""``wrn-launch logs RUN_DIR [--rank K] [--follow] [--lines N]``: read or follow a run's logs.

With ``--rank K`` the log of that rank is printed as it is. Without it every worker's log (and
the scheduler's) is printed, each line prefixed with ``host:rank`` (``host:scheduler``): one
log after the other when reading (log lines carry no timestamps to merge on), interleaved in
arrival order when following. ``--follow`` prints what is there and then new lines as they
are written; it ends once run.json no longer says "running" (or no process of the run is
alive on this host any more), or on Ctrl-C. A log that a restart moved to
``logs/attempt-N/`` is followed into its new file.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from launcher.commands.common import error, run_alone
from launcher.rundir.layout import path_inside
from launcher.rundir.reading import LoadedRun, RunDirError, load_run


@dataclass(frozen=True)
class LogSource:
    """One log file of a run and the prefix its lines get when several are shown."""

    label: str
    path: Path
    rank: int | None = None


def log_sources(record: LoadedRun, rank: int | None = None) -> list[LogSource]:
    """The logs of ``record``'s processes from run.json (workers in rank order, then the
    scheduler), or only ``rank``'s. Raises ``RunDirError`` for a rank the run does not have."""
    procs = [{"host": p.host, "rank": p.rank, "log": p.log, "name": p.name}
             for p in record.record.processes if p.log]
    if not procs:  # an old or damaged run.json: fall back on the file names
        procs = [{"host": f.name.rsplit("-rank", 1)[0], "rank": int(f.stem.rsplit("rank", 1)[1]),
                  "log": f"logs/{f.name}"}
                 for f in sorted((record.path / "logs").glob("*-rank*.log"))
                 if f.stem.rsplit("rank", 1)[1].isdigit()]
    workers = sorted((p for p in procs if isinstance(p.get("rank"), int)), key=lambda p: p["rank"])
    others = [p for p in procs if not isinstance(p.get("rank"), int)]
    if rank is not None:
        chosen = [p for p in workers if p["rank"] == rank]
        if not chosen:
            ranks = [p["rank"] for p in workers]
            have = f"ranks {ranks[0]}-{ranks[-1]}" if ranks else "no worker logs"
            raise RunDirError(f"--rank {rank}: {record.path} has {have}; pick one of those")
        workers, others = chosen, []
    sources = []
    for p in workers + others:
        label = f"{p.get('host')}:{p['rank'] if isinstance(p.get('rank'), int) else p.get('name', '?')}"
        path = path_inside(record.path, p["log"])
        if path is None:
            raise RunDirError(f"{record.path / 'run.json'}: the log of {label} is given as "
                              f"{p['log']!r}, outside the run directory {record.path}; logs only "
                              f"reads files inside it: correct that entry (logs/<host>-rank<k>.log) "
                              f"or open the file yourself")
        sources.append(LogSource(label, path, p.get("rank") if isinstance(p.get("rank"), int) else None))
    return sources


def read_lines(source: LogSource, last: int | None = None) -> list[str]:
    """The lines of a log (its last ``last`` lines if given); a missing log has none."""
    try:
        with open(source.path, encoding="utf-8", errors="replace") as fh:
            lines = collections.deque(fh, maxlen=last) if last is not None else list(fh)
    except FileNotFoundError:
        return []
    return [line.rstrip("\n") for line in lines]


def print_logs(sources: Sequence[LogSource], out: TextIO, prefix: bool, last: int | None = None) -> int:
    """Print each log in turn (``host:rank`` prefixes when ``prefix``); returns the line count."""
    count = 0
    for source in sources:
        for line in read_lines(source, last):
            out.write(f"{source.label} {line}\n" if prefix else line + "\n")
            count += 1
    out.flush()
    return count


class _Tail:
    """Reads new complete lines of one file, reopening it when it is replaced or moved."""

    def __init__(self, source: LogSource, start_at_end: bool) -> None:
        self.source = source
        self.fh = None
        self.ino: int | None = None
        self.partial = ""
        self.start_at_end = start_at_end

    def _open(self) -> bool:
        try:
            fh = open(self.source.path, encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return False
        if self.fh is not None:
            self.fh.close()
        self.fh, self.ino = fh, os.fstat(fh.fileno()).st_ino
        if self.start_at_end:
            fh.seek(0, os.SEEK_END)
            self.start_at_end = False
        return True

    def read(self) -> list[str]:
        if self.fh is None and not self._open():
            return []
        lines = self._drain()
        try:
            moved = os.stat(self.source.path).st_ino != self.ino
        except FileNotFoundError:
            moved = False  # gone for now (being archived); keep the open file
        if moved:
            lines += self._drain()
            if self.partial:
                lines.append(self.partial)
                self.partial = ""
            self._open()
            lines += self._drain()
        return lines

    def _drain(self) -> list[str]:
        out = []
        for chunk in iter(self.fh.readline, ""):
            chunk = self.partial + chunk
            self.partial = ""
            if chunk.endswith("\n"):
                out.append(chunk[:-1])
            else:
                self.partial = chunk
        return out

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def run_is_live(run_dir: Path) -> Callable[[], bool]:
    """A check for ``follow``: True while run.json says running and a process of it is alive."""
    def live() -> bool:
        try:
            return load_run(run_dir).status == "running"
        except RunDirError:
            return False
    return live


def follow(sources: Sequence[LogSource], out: TextIO, prefix: bool, live: Callable[[], bool],
           last: int | None = None, poll_s: float = 0.25) -> int:
    """Print the logs (the last ``last`` lines of each, if given), then new lines as they come,
    until ``live()`` turns False (then whatever is left is printed). Returns the line count."""
    count = print_logs(sources, out, prefix, last)
    tails = [_Tail(s, start_at_end=True) for s in sources]
    try:
        while True:
            running = live()
            for tail in tails:
                for line in tail.read():
                    out.write(f"{tail.source.label} {line}\n" if prefix else line + "\n")
                    count += 1
            out.flush()
            if not running:
                return count
            time.sleep(poll_s)
    finally:
        for tail in tails:
            tail.close()


#: The command's line in ``wrn-launch --help``, and what ``wrn-launch logs --help`` says it does.
HELP = "print or follow a run's logs"
DESCRIPTION = ("Print or follow the logs of a "
               "run: one rank's, or every process's with host:rank prefixes.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``wrn-launch logs``."""
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--rank", type=int, metavar="K", help="only this rank's log, without prefixes")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the "
                   "run ends (or Ctrl-C)")
    p.add_argument("-n", "--lines", type=int, metavar="N", help="start with the last N lines of each log")


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """``wrn-launch logs RUN_DIR [--rank K] [--follow] [--lines N]``; returns the exit status."""
    out = stream or sys.stdout
    if args.lines is not None and args.lines < 0:
        return error("logs", f"--lines {args.lines}: give 0 or more lines")
    try:
        record = load_run(args.run_dir)
        sources = log_sources(record, args.rank)
    except RunDirError as exc:
        return error("logs", str(exc))
    prefix = args.rank is None
    try:
        if args.follow:
            follow(sources, out, prefix, run_is_live(record.path), args.lines)
        else:
            print_logs(sources, out, prefix, args.lines)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `wrn-launch logs RUN | head`: stop quietly, also at exit
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    return 0


def main(argv: Sequence[str] | None = None, stream: TextIO | None = None) -> int:
    """``wrn-launch logs`` on its own (the CLI builds the same parser as a subcommand)."""
    return run_alone("logs", DESCRIPTION, add_arguments, run, argv, stream)

if __name__ == "__main__":
    sys.exit(main())
