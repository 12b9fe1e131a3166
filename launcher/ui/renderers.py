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
from launcher.ui.dashboard import dashboard
from launcher.ui.formatting import exit_text, fmt_duration, fmt_num, fmt_top1, who
from launcher.ui.planview import plan_renderables, start_line
from launcher.rundir.record import masked_plan
from launcher.ui.procstat import read_rss
from launcher.supervise.progress import LiveState, RunProgress
from launcher.supervise.result import RunSummary
from launcher.ui.summaryview import root_cause_lines, summary_rows
from wrn.hostname import local_names


class Renderer:
    """Receives what happens during a run. Every method may be called from the supervisor's
    main thread only; the default implementation shows nothing. ``tail_ranks`` (--tail-ranks):
    the ranks whose log lines ``log_line`` shows."""

    tail_ranks: frozenset[int] = frozenset()

    def show_plan(self, plan: LaunchPlan, notes: dict[str, Any]) -> None:
        """A dry run's plan."""

    def run_started(self, plan: LaunchPlan, run_dir: str, notes: dict[str, Any]) -> None:
        """The run directory exists and agents are about to start; ``notes`` as in show_plan."""

    def process_started(self, name: str, rank: int | None, host: str, pid: int) -> None:
        """A process of the run is running."""

    def process_exited(self, name: str, rank: int | None, host: str, exit_code: int | None,
                       signal: str | None, expected: bool) -> None:
        """A process ended; ``expected`` when it was asked to stop or succeeded."""

    def event(self, host: str, record: dict[str, Any], progress: RunProgress) -> None:
        """A worker event (already added to ``progress``)."""

    def message(self, level: str, text: str) -> None:
        """A note from the launcher itself: level is ``info``, ``warning`` or ``error``."""

    def log_line(self, rank: int | None, host: str, line: str) -> None:
        """A plain output line of a worker (shown only for ``tail_ranks``)."""

    def tick(self, progress: RunProgress) -> None:
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

    def run_started(self, plan: LaunchPlan, run_dir: str, notes: dict[str, Any]) -> None:
        self._say(f"run dir {run_dir}")
        self._say(start_line(plan, notes))
        for warning in plan.warnings:
            self._say(f"WARNING: {warning}")

    def process_started(self, name: str, rank: int | None, host: str, pid: int) -> None:
        self._say(f"{who(name, rank)} started on {host} (pid {pid})")

    def process_exited(self, name, rank, host, exit_code, signal, expected) -> None:
        self._say(f"{who(name, rank)} on {host} {exit_text(exit_code, signal)}")

    def event(self, host: str, record: dict[str, Any], progress: RunProgress) -> None:
        line = describe_event(record, progress, time.time())
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


def describe_event(record: dict[str, Any], progress: RunProgress, now: float) -> str | None:
    """One line for an event worth a line (rank 0's progress, every rank's problems)."""
    kind, rank = record.get("event"), record.get("rank")
    if kind == "error":
        return f"ERROR from rank {rank}: {record.get('kind') or 'error'}: {record.get('message')}"
    if kind == "warning":
        extra = {k: v for k, v in record.items()
                 if k not in ("v", "event", "rank", "time", "message")}
        return f"WARNING from rank {rank}: {record.get('message')}" + (f" {extra}" if extra else "")
    if rank != 0:
        return None
    if kind == "start":
        params = record.get("params")
        return (f"training {record.get('model')} ({params:,} parameters) on "
                f"{record.get('world_size')} {record.get('device_target')} worker(s): "
                f"{record.get('epochs')} epochs x {record.get('steps_per_epoch')} steps, batch "
                f"{record.get('batch_size')} per device" if isinstance(params, int)
                else f"training started: {record}")
    if kind == "step":
        total, done = progress.total_steps, record.get("global_step")
        pct = f" ({100 * done / total:.0f}%)" if total and isinstance(done, int) else ""
        ips = progress.imgs_per_s
        return (f"epoch {record.get('epoch')}/{progress.epochs or '?'} step {record.get('step')}"
                f"{pct} loss {fmt_num(record.get('loss'))} lr {fmt_num(record.get('lr'))} "
                f"{'-' if ips is None else f'{ips:,.1f}'} imgs/s ETA {fmt_duration(progress.eta_s(now))}")
    if kind == "epoch_end":
        return (f"epoch {record.get('epoch')} done: loss {fmt_num(record.get('loss'))}, "
                f"{fmt_num(record.get('seconds'), '.1f')} s")
    if kind == "eval":
        return (f"eval after epoch {record.get('epoch')}: top-1 {fmt_top1(record.get('top1'))} "
                f"({record.get('correct')}/{record.get('total')})")
    if kind == "checkpoint":
        return f"checkpoint {record.get('path')}"
    if kind == "finish":
        return (f"rank 0 finished: top-1 {fmt_top1(record.get('top1'))}, "
                f"{fmt_num(record.get('seconds'), '.1f')} s")
    return None


class RichRenderer(Renderer):
    """The live dashboard (``dashboard``) in a terminal; milestones and problems scroll above
    it, then the summary table and, on failure, a root-cause panel."""

    def __init__(self, console: Console | None = None, stall_after: float = 300.0,
                 min_refresh_s: float = 0.25) -> None:
        self.console = console or Console()
        self.stall_after = stall_after
        self.min_refresh_s = min_refresh_s
        self.state: LiveState | None = None
        self.live: Live | None = None
        self._last_refresh = 0.0
        self._local = local_names()

    def _print(self, *items: Any) -> None:
        self.console.print(*items)

    def _view(self) -> Any:
        size = self.console.size
        return dashboard(self.state, time.time(), max(size.height - 1, 8), size.width)

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

    def run_started(self, plan: LaunchPlan, run_dir: str, notes: dict[str, Any]) -> None:
        now = time.time()
        if self.state is None:
            self._print(Text(f"run dir {run_dir}", style="bold"))
            self._print(Text(start_line(plan, notes)))
            for warning in plan.warnings:
                self._print(Text(f"warning: {warning}", style="yellow"))
            self.state = LiveState.from_plan(plan, run_dir, stall_after=self.stall_after, t0=now)
        else:
            self.state.restarted(now)
            self.state.finished_status = None
        if self.live is None:
            self.live = Live(console=self.console, auto_refresh=False, transient=False,
                             redirect_stdout=False, redirect_stderr=False,
                             vertical_overflow="crop", get_renderable=self._view)
            self.live.start()
        self._refresh(force=True)

    def process_started(self, name, rank, host, pid) -> None:
        if self.state is not None:
            self.state.process_started(rank, host, pid, time.time())
            self._refresh()

    def process_exited(self, name, rank, host, exit_code, signal, expected) -> None:
        if self.state is not None:
            self.state.process_exited(rank, exit_code, signal, expected, time.time())
        if not expected:
            self._print(Text(f"{who(name, rank)} on {host} {exit_text(exit_code, signal)}", style="bold red"))
        self._refresh()

    def event(self, host: str, record: dict[str, Any], progress: RunProgress) -> None:
        now = time.time()
        if self.state is not None:
            self.state.event(host, record, now, progress)
        kind = record.get("event")
        milestone = record.get("rank") == 0 and kind in ("start", "epoch_end", "eval", "checkpoint")
        if kind in ("error", "warning") or milestone:
            line = describe_event(record, progress, now)
            if line:
                style = {"error": "bold red", "warning": "yellow"}.get(kind, "")
                self._print(Text(line, style=style))
        self._refresh()

    def log_line(self, rank: int | None, host: str, line: str) -> None:
        if rank in self.tail_ranks:
            self._print(Text(f"[rank {rank}] {line}"))
            self._refresh()

    def tick(self, progress: RunProgress) -> None:
        if self.state is None:
            return
        for view in self.state.ranks.values():
            if view.pid and not view.ended and view.host in self._local:
                view.rss = read_rss(view.pid)
        self._refresh()

    def message(self, level: str, text: str) -> None:
        if self.state is not None:
            self.state.message(level, text, time.time())
        style = {"warning": "yellow", "error": "bold red"}.get(level, "")
        self._print(Text(text if level == "info" else f"{level}: {text}", style=style))
        self._refresh()

    def finished(self, summary: RunSummary) -> None:
        if self.state is not None:
            self.state.finished_status = summary.status
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
    ``process_exited``, ``message``, ``log_line`` (--tail-ranks) or ``summary``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def _write(self, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n")
        self.stream.flush()

    def _launcher(self, event: str, **fields: Any) -> None:
        self._write({"source": "launcher", "event": event, "time": round(time.time(), 3), **fields})

    def show_plan(self, plan: LaunchPlan, notes: dict[str, Any]) -> None:
        self._launcher("plan", plan=masked_plan(plan.to_dict()), notes=notes)

    def run_started(self, plan: LaunchPlan, run_dir: str, notes: dict[str, Any]) -> None:
        self._launcher("run_started", run_dir=run_dir, backend=plan.backend,
                       world_size=plan.world_size, hosts=list(plan.hosts), warnings=list(plan.warnings))

    def process_started(self, name, rank, host, pid) -> None:
        self._launcher("process_started", name=name, rank=rank, host=host, pid=pid)

    def process_exited(self, name, rank, host, exit_code, signal, expected) -> None:
        self._launcher("process_exited", name=name, rank=rank, host=host, exit_code=exit_code,
                       signal=signal, expected=expected)

    def event(self, host: str, record: dict[str, Any], progress: RunProgress) -> None:
        self._write({**record, "host": host})

    def message(self, level: str, text: str) -> None:
        self._launcher("message", level=level, text=text)

    def log_line(self, rank: int | None, host: str, line: str) -> None:
        if rank in self.tail_ranks:
            self._launcher("log_line", rank=rank, host=host, line=line)

    def finished(self, summary: RunSummary) -> None:
        self._launcher("summary", **summary.to_dict(),
                       root_cause=summary.root_cause.to_dict() if summary.root_cause else None)


def make_renderer(stream: TextIO | None = None, *, plain: bool = False, json_lines: bool = False,
                  stall_after: float = 300.0, tail_ranks: Any = ()) -> Renderer:
    """The renderer for ``stream``: ``JsonRenderer`` with ``json_lines``; else the live
    ``RichRenderer`` when ``stream`` is a terminal (and TERM is not dumb) and not ``plain``;
    else ``PlainRenderer``. ``stall_after`` is --stall-timeout (when the dashboard says
    stalled); ``tail_ranks`` the ranks whose log lines are shown (--tail-ranks)."""
    stream = stream or sys.stdout
    renderer: Renderer
    if json_lines:
        renderer = JsonRenderer(stream)
    elif hasattr(stream, "isatty") and stream.isatty() and not plain \
            and os.environ.get("TERM") != "dumb":
        renderer = RichRenderer(Console(file=stream), stall_after=stall_after)
    else:
        renderer = PlainRenderer(stream)
    renderer.tail_ranks = frozenset(tail_ranks)
    return renderer
