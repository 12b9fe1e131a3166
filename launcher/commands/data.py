"""``wrn-launch data prepare ARCHIVE_OR_DIR [OUT]``: a downloaded dataset made ready to train on.

The work is ``wrn.dataprep.prepare``; this module is its command line: a Rich progress bar
while the archive is extracted (files, bytes, ETA), the report (name encoding, repaired names,
images, bad images and stray files), and the ``data_path`` to use. Bad input: one paragraph
on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TextIO

from launcher.commands.common import Parser, error

HELP = "prepare a downloaded dataset (extract, fix names, verify)"
DESCRIPTION = "Work on datasets."
PREPARE_DESCRIPTION = ("Prepare a downloaded dataset: extract the zip (names decoded right: the "
                       "zip's UTF-8 flag, else UTF-8, then GBK/CP936), or repair the mangled names "
                       "of a folder extracted before; find the folder holding train/ and test/, "
                       "verify every image, write classes.json and print the data_path to use. A "
                       "second run does nothing; an interrupted one continues where it stopped.")
#: How many bad images and stray files the report names (all are in prepare.json).
SHOWN = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``data`` and its one subcommand, ``prepare`` (argparse requires it)."""
    commands = p.add_subparsers(dest="data_command", metavar="prepare", parser_class=Parser,
                                required=True)
    prep = commands.add_parser("prepare", help="extract / repair, verify, write the class index",
                               description=PREPARE_DESCRIPTION)
    prep.add_argument("source", metavar="ARCHIVE_OR_DIR", help="the downloaded zip (e.g. "
                      "rp2k_dataset.zip), or a folder it was extracted to (repaired in place)")
    prep.add_argument("out", metavar="OUT", nargs="?", default=None, help="where the zip is "
                      "extracted (default: beside it, named after it)")
    prep.add_argument("--verify", choices=("quick", "full", "off"), default="quick",
                      help="image check: quick (whole JPEG/PNG structure, default), full (also "
                           "decode every image), off")
    prep.add_argument("--encoding", default=None, metavar="NAME", help="the encoding of member "
                      "names without the UTF-8 flag (default: UTF-8, else GBK/CP936, else GB18030)")


def _progress(console) -> tuple[Any, Callable[[str, int, int], Callable[[int, int], None]]]:
    """A Rich progress display (started when extraction starts) and the factory ``prepare``
    reports extraction to."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.fields[files]:,}/{task.fields[total_files]:,} files"),
                   DownloadColumn(), TransferSpeedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                   TimeElapsedColumn(), console=console)

    def start(what: str, files: int, size: int) -> Callable[[int, int], None]:
        if not bar.live.is_started:
            bar.start()
        task = bar.add_task(what, total=max(size, 1), files=0, total_files=files)
        count = [0]

        def advance(n: int, nbytes: int) -> None:
            count[0] += n
            bar.update(task, advance=nbytes, files=count[0])
        return advance
    return bar, start


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Run ``data prepare``; exit status 0, or 2 with one paragraph on stderr."""
    from rich.console import Console

    from wrn.config import ConfigError
    from wrn.dataprep import prepare

    out = stream or sys.stdout
    console = Console(file=sys.stderr)
    bar, start = _progress(console)

    def log(msg: str) -> None:
        console.print(msg, markup=False, highlight=False)
    try:
        try:
            result = prepare(args.source, args.out, verify=args.verify, encoding=args.encoding,
                             progress=start, log=log)
        finally:
            if bar.live.is_started:
                bar.stop()
    except ConfigError as exc:
        return error("data prepare", str(exc))
    except OSError as exc:
        return error("data prepare", f"{exc.filename or args.source}: {exc.strerror}; check the path "
                                     f"and its permissions")
    for what, items in (("bad image(s), left out of training", [f"{p} ({why})" for p, why in result.bad]),
                        ("stray file(s), ignored", result.stray)):
        if items:
            log(f"{len(items)} {what}:")
            for item in items[:SHOWN]:
                log(f"  {item}")
            if len(items) > SHOWN:
                log(f"  ... and {len(items) - SHOWN} more (all in {result.data_path}/prepare.json)")
    print(f"data_path: {result.data_path}", file=out)
    print(f"num_classes: {len(result.classes)}", file=out)
    return 0
