"""The renderers: everything the user sees during a run goes through the ``Renderer``
interface. The supervisor only calls that interface; it never prints.

Three renderers exist:

* ``RichRenderer`` for a terminal: the live dashboard (``launcher.ui.dashboard``) with milestones
  and problems scrolling above it; at the end, a summary table and, on failure, a root-cause
  panel.
* ``PlainRenderer`` for pipes and files: one timestamped line per thing that happened
  (``describe_event``), and the same summary as plain text, never an escape sequence.
* ``JsonRenderer`` (``--json``): every event as one JSON line, for other tools.

``make_renderer(stream)`` picks one. What the plan and the summary say is in
``launcher.ui.planview`` and ``launcher.ui.summaryview``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from typing import Any, TextIO

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cluster.plan import LaunchPlan
from launcher.rundir.record import masked_plan
from launcher.supervise.ranks import ProcessState, RunBoard
from launcher.supervise.result import RunSummary
from launcher.ui.dashboard import dashboard
from launcher.ui.formatting import exit_text, fmt_duration, fmt_num, fmt_top1, who
from launcher.ui.planview import plan_renderables, start_line
from launcher.ui.procstat import read_rss
from launcher.ui.summaryview import root_cause_lines, summary_rows
from wrn.contract import Checkpoint, EpochEnd, Error, Eval, Event, Finish, Start, Step, WarningEvent
from wrn.hostname import local_names


class Renderer:
    """Receives what happens during a run. Every method may be called from the supervisor's
    main thread only; the default implementation shows nothing. ``tail_ranks`` (--tail-ranks):
    the ranks whose log lines ``log_line`` shows."""

    tail_ranks: frozenset[int] = frozenset()

    def show_plan(self, plan: LaunchPlan, notes: dict[str, Any]) -> None:
        """A dry run's plan."""

    def run_started(self, plan: LaunchPlan, run_dir: str, notes: dict[str, Any],
                    board: RunBoard) -> None:
        """An attempt begins: the run directory exists and agents are about to start; ``notes``
        as in show_plan; ``board`` is the run's live state (the same object every attempt)."""

    def process_started(self, name: str, rank: int | None, host: str, pid: int) -> None:
        """A process of the run is running."""

    def process_exited(self, name: str, rank: int | None, host: str, exit_code: int | None,
                       signal: str | None, expected: bool) -> None:
        """A process ended; ``expected`` when it was asked to stop or succeeded."""

    def event(self, host: str, record: dict[str, Any], event: Event, board: RunBoard) -> None:
        """A worker event: its JSON record as received and its typed ``event`` (already on
        the ``board``)."""

    def health(self, proc: ProcessState, stalled: bool) -> None:
        """A rank was warned about as stalled (``stalled``), or is heard from again."""

    def message(self, level: str, text: str) -> None:
        """A note from the launcher itself: level is ``info``, ``warning`` or ``error``."""

    def log_line(self, rank: int | None, host: str, line: str) -> None:
        """A plain output line of a worker (shown only for ``tail_ranks``)."""

    def tick(self, board: RunBoard) -> None:
        """Called about every second while running (for clocks and ETAs)."""

    def finished(self, summary: RunSummary) -> None:
        """The run is over."""

    def close(self) -> None:
        """Release the terminal."""


class PlainRenderer(Renderer):
    """Timestamped lines, no live display, no escape sequences: for pipes, files and CI."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream, force_terminal=False, no_color=True,
                               color_system=None, width=160, highlight=False, emoji=False)

    def _say(self, text: str) -> None:
        stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        for line in text.splitlines() or [""]:
            self.stream.write(f"{stamp} {line}\n")
        self.stream.flush()

    def show_plan(self, plan: LaunchPlan, notes: dict[str, Any]) -> None:
        for item in plan_renderables(plan, notes):
            self.console.print(item, soft_wrap=isinstance(item, Text))  # long lines stay whole
        self.stream.flush()

    def run_started(self, plan: LaunchPlan, run_dir: str, notes: dict[str, Any],
                    board: RunBoard) -> None:
        self._say(f"run dir {run_dir}")
        self._say(start_line(plan, notes))
        for warning in plan.warnings:
            self._say(f"WARNING: {warning}")

    def process_started(self, name: str, rank: int | None, host: str, pid: int) -> None:
        self._say(f"{who(name, rank)} started on {host} (pid {pid})")

    def process_exited(self, name, rank, host, exit_code, signal, expected) -> None:
        self._say(f"{who(name, rank)} on {host} {exit_text(exit_code, signal)}")

    def event(self, host: str, record: dict[str, Any], event: Event, board: RunBoard) -> None:
        line = describe_event(event, board)
        if line:
            self._say(line)

    def message(self, level: str, text: str) -> None:
        self._say(text if level == "info" else f"{level.upper()}: {text}")

    def log_line(self, rank: int | None, host: str, line: str) -> None:
        if rank in self.tail_ranks:
            self._say(f"[rank {rank}] {line}")

    def finished(self, summary: RunSummary) -> None:
        self._say("summary:")
        width = max(len(k) for k, _ in summary_rows(summary))
        for key, value in summary_rows(summary):
            self._say(f"  {key:<{width}}  {value}")
        if summary.root_cause:
            title, body = root_cause_lines(summary.root_cause, summary.run_dir)
            self._say(title)
            for line in body:
                self._say(f"  {line}")


def describe_event(event: Event, board: RunBoard) -> str | None:
    """One line for an event worth a line (rank 0's progress, every rank's problems)."""
    rank, progress = event.rank, board.progress
    if isinstance(event, Error):
        return f"ERROR from rank {rank}: {event.error_kind or 'error'}: {event.message}"
    if isinstance(event, WarningEvent):
        extra = dict(event.extra)
        return f"WARNING from rank {rank}: {event.message}" + (f" {extra}" if extra else "")
    if rank != 0:
        return None
    if isinstance(event, Start):
        return (f"training {event.model} ({event.params:,} parameters) on {event.world_size} "
                f"{event.device_target} worker(s): {event.epochs} epochs x "
                f"{event.steps_per_epoch} steps, batch {event.batch_size} per device"
                if event.params is not None else f"training started: {event.fields()}")
    if isinstance(event, Step):
        total, done = progress.total_steps, event.global_step
        pct = f" ({100 * done / total:.0f}%)" if total and done is not None else ""
        ips = progress.imgs_per_s
        return (f"epoch {event.epoch}/{progress.epochs or '?'} step {event.step}{pct} loss "
                f"{fmt_num(event.loss)} lr {fmt_num(event.lr)} "
                f"{'-' if ips is None else f'{ips:,.1f}'} imgs/s ETA "
                f"{fmt_duration(progress.eta_s(board.clock()))}")
    if isinstance(event, EpochEnd):
        return f"epoch {event.epoch} done: loss {fmt_num(event.loss)}, {fmt_num(event.seconds, '.1f')} s"
    if isinstance(event, Eval):
        return (f"eval after epoch {event.epoch}: top-1 {fmt_top1(event.top1)} "
                f"({event.correct}/{event.total})")
    if isinstance(event, Checkpoint):
        return f"checkpoint {event.path}"
    if isinstance(event, Finish):
        return f"rank 0 finished: top-1 {fmt_top1(event.top1)}, {fmt_num(event.seconds, '.1f')} s"
    return None


class RichRenderer(Renderer):
    """The live dashboard (``dashboard``, drawn from the run's board) in a terminal; milestones
    and problems scroll above it, then the summary table and, on failure, a root-cause panel."""

    def __init__(self, console: Console | None = None, min_refresh_s: float = 0.25) -> None:
        self.console = console or Console()
        self.min_refresh_s = min_refresh_s
        self.board: RunBoard | None = None
        self.live: Live | None = None
        self._last_refresh = 0.0
        self._local = local_names()

    def _print(self, *items: Any) -> None:
        self.console.print(*items)

    def _view(self) -> Any:
        size = self.console.size
        return dashboard(self.board, self.board.clock(), max(size.height - 1, 8), size.width)

    def _refresh(self, force: bool = False) -> None:
        if self.live is None:
            return
        now = time.monotonic()
        if force or now - self._last_refresh >= self.min_refresh_s:
            self._last_refresh = now
            self.live.refresh()

    def show_plan(self, plan: LaunchPlan, notes: dict[str, Any]) -> None:
        for item in plan_renderables(plan, notes):
            self.console.print(item)

    def run_started(self, plan: LaunchPlan, run_dir: str, notes: dict[str, Any],
                    board: RunBoard) -> None:
        if self.board is None:
            self._print(Text(f"run dir {run_dir}", style="bold"))
            self._print(Text(start_line(plan, notes)))
            for warning in plan.warnings:
                self._print(Text(f"warning: {warning}", style="yellow"))
        self.board = board
        if self.live is None:
            self.live = Live(console=self.console, auto_refresh=False, transient=False,
                             redirect_stdout=False, redirect_stderr=False,
                             vertical_overflow="crop", get_renderable=self._view)
            self.live.start()
        self._refresh(force=True)

    def process_started(self, name, rank, host, pid) -> None:
        self._refresh()

    def process_exited(self, name, rank, host, exit_code, signal, expected) -> None:
        if not expected:
            self._print(Text(f"{who(name, rank)} on {host} {exit_text(exit_code, signal)}", style="bold red"))
        self._refresh()

    def event(self, host: str, record: dict[str, Any], event: Event, board: RunBoard) -> None:
        milestone = event.rank == 0 and isinstance(event, (Start, EpochEnd, Eval, Checkpoint))
        if isinstance(event, (Error, WarningEvent)) or milestone:
            line = describe_event(event, board)
            if line:
                style = {"error": "bold red", "warning": "yellow"}.get(event.kind, "")
                self._print(Text(line, style=style))
        self._refresh()

    def health(self, proc: ProcessState, stalled: bool) -> None:
        self._refresh()

    def log_line(self, rank: int | None, host: str, line: str) -> None:
        if rank in self.tail_ranks:
            self._print(Text(f"[rank {rank}] {line}"))
            self._refresh()

    def tick(self, board: RunBoard) -> None:
        for proc in board.ranks.values():
            if proc.pid and not proc.ended and proc.host in self._local:
                proc.rss = read_rss(proc.pid)
        self._refresh()

    def message(self, level: str, text: str) -> None:
        style = {"warning": "yellow", "error": "bold red"}.get(level, "")
        self._print(Text(text if level == "info" else f"{level}: {text}", style=style))
        self._refresh()

    def finished(self, summary: RunSummary) -> None:
        self.close()
        table = Table(title="wrn-launch summary", box=box.ROUNDED, show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for key, value in summary_rows(summary):
            style = ""
            if key == "status":
                style = "bold green" if summary.status == "succeeded" else "bold red"
            if key == "replicas" and summary.replicas_in_sync is False:
                style = "bold white on red"
            table.add_row(key, Text(value, style=style))
        self.console.print(table)
        if summary.root_cause:
            title, body = root_cause_lines(summary.root_cause, summary.run_dir)
            self.console.print(Panel(Group(*[Text(line) for line in body]) if body else Text(""),
                                     title=Text(title, style="bold"), border_style="red"))

    def close(self) -> None:
        if self.live is not None:
            self._refresh(force=True)
            self.live.stop()
            self.live = None


class JsonRenderer(Renderer):
    """``--json``: one JSON object per line, for other tools. Worker events appear exactly as
    in metrics.jsonl (the event plus ``host``); the launcher's own records carry
    ``"source": "launcher"`` and an ``event`` of ``plan``, ``run_started``, ``process_started``,
    ``process_exited``, ``stalled`` and ``recovered`` (a rank warned about as stalled, heard from
    again: the same judgement as the dashboard's and run.json's), ``message``, ``log_line``
    (--tail-ranks) or ``summary``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def _write(self, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n")
        self.stream.flush()

    def _launcher(self, event: str, **fields: Any) -> None:
        self._write({"source": "launcher", "event": event, "time": round(time.time(), 3), **fields})

    def show_plan(self, plan: LaunchPlan, notes: dict[str, Any]) -> None:
        self._launcher("plan", plan=masked_plan(plan.to_dict()), notes=notes)

    def run_started(self, plan: LaunchPlan, run_dir: str, notes: dict[str, Any],
                    board: RunBoard) -> None:
        self._launcher("run_started", run_dir=run_dir, backend=plan.backend,
                       world_size=plan.world_size, hosts=list(plan.hosts), warnings=list(plan.warnings))

    def process_started(self, name, rank, host, pid) -> None:
        self._launcher("process_started", name=name, rank=rank, host=host, pid=pid)

    def process_exited(self, name, rank, host, exit_code, signal, expected) -> None:
        self._launcher("process_exited", name=name, rank=rank, host=host, exit_code=exit_code,
                       signal=signal, expected=expected)

    def event(self, host: str, record: dict[str, Any], event: Event, board: RunBoard) -> None:
        self._write({**record, "host": host})

    def health(self, proc: ProcessState, stalled: bool) -> None:
        self._launcher("stalled" if stalled else "recovered", name=proc.name, rank=proc.rank,
                       host=proc.host)

    def message(self, level: str, text: str) -> None:
        self._launcher("message", level=level, text=text)

    def log_line(self, rank: int | None, host: str, line: str) -> None:
        if rank in self.tail_ranks:
            self._launcher("log_line", rank=rank, host=host, line=line)

    def finished(self, summary: RunSummary) -> None:
        self._launcher("summary", **summary.to_dict(),
                       root_cause=summary.root_cause.to_dict() if summary.root_cause else None)


def make_renderer(stream: TextIO | None = None, *, plain: bool = False, json_lines: bool = False,
                  tail_ranks: Any = ()) -> Renderer:
    """The renderer for ``stream``: ``JsonRenderer`` with ``json_lines``; else the live
    ``RichRenderer`` when ``stream`` is a terminal (and TERM is not dumb) and not ``plain``;
    else ``PlainRenderer``. ``tail_ranks``: the ranks whose log lines are shown (--tail-ranks)."""
    stream = stream or sys.stdout
    renderer: Renderer
    if json_lines:
        renderer = JsonRenderer(stream)
    elif hasattr(stream, "isatty") and stream.isatty() and not plain \
            and os.environ.get("TERM") != "dumb":
        renderer = RichRenderer(Console(file=stream))
    else:
        renderer = PlainRenderer(stream)
    renderer.tail_ranks = frozenset(tail_ranks)
    return renderer
