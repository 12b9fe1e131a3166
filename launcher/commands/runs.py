"""``wrn-launch runs [DIR]``: a table of the runs in DIR (default ./runs; a run directory itself
works too): name, status, start, duration, devices, final loss and accuracy."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from rich import box
from rich.table import Table
from rich.text import Text

from launcher.commands.common import PROG, STATUS_STYLE, error, output_console, run_alone
from launcher.rundir.reading import LOST_NOTE, LoadedRun, RunDirError, find_runs
from launcher.rundir.record import RUN_JSON
from launcher.ui.formatting import cells, fmt_duration, fmt_loss, fmt_top1, fmt_when


def runs_table(records: Sequence[LoadedRun]) -> Table:
    """The ``wrn-launch runs`` table: name, status, start, duration, devices, final loss, top-1."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name, justify in (("name", "left"), ("status", "left"), ("start", "left"),
                          ("duration", "right"), ("devices", "left"), ("final loss", "right"),
                          ("accuracy", "right")):
        table.add_column(name, justify=justify, no_wrap=name != "name", overflow="fold")
    jobs = _slurm_jobs(records)
    if jobs:
        table.add_column("slurm job", no_wrap=True)
    for r in records:
        status = r.status
        row = cells(r.name, Text(status, style=STATUS_STYLE.get(status, "")), fmt_when(r.start),
                    fmt_duration(r.duration_s), r.devices, fmt_loss(r.final_loss), fmt_top1(r.top1))
        table.add_row(*row, *([jobs.get(r.name, "-")] if jobs else []))
    return table


def _slurm_jobs(records: Sequence[LoadedRun]) -> dict[str, str]:
    """Run name -> "JOB STATE" for the runs made inside Slurm jobs (one squeue call for all)."""
    from launcher.backends.slurm import job_states, run_job_id

    ids = {r.name: job for r in records if (job := run_job_id(r.path))}
    if not ids:
        return {}
    states = job_states(list(ids.values()))
    return {name: f"{job} {states.get(job, 'ended')}" for name, job in ids.items()}



#: The command's line in ``wrn-launch --help``, and what ``wrn-launch runs --help`` says it does.
HELP = "list runs"
DESCRIPTION = ("List the runs in DIR: name, "
               "status, start, duration, devices, final loss and accuracy.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``wrn-launch runs``."""
    p.add_argument("dir", nargs="?", default="runs", help="folder of run directories (default ./runs)")


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """``wrn-launch runs [DIR]``: print the table of runs; returns the exit status."""
    console = output_console(stream)
    try:
        records = find_runs(args.dir)
    except RunDirError as exc:
        return error("runs", str(exc))
    if not records:
        console.print(Text(f"no runs in {args.dir} (a run directory has a {RUN_JSON}; start one "
                           f"with `{PROG} --devices N`)"))
        return 0
    console.print(runs_table(records))
    if any(r.status == "lost" for r in records):
        console.print(Text(LOST_NOTE, style="yellow"))
    return 0


def main(argv: Sequence[str] | None = None, stream: TextIO | None = None) -> int:
    """``wrn-launch runs`` on its own (the CLI builds the same parser as a subcommand)."""
    return run_alone("runs", DESCRIPTION, add_arguments, run, argv, stream)

if __name__ == "__main__":
    sys.exit(main())
