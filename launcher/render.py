"""What the user sees. The supervisor only calls the ``Renderer`` interface; it never prints.

Three renderers exist:

* ``RichRenderer`` for a terminal: the live dashboard (``dashboard``: run name, backend, hosts,
  world size, elapsed and ETA; overall progress; one row per rank with host, device, pid,
  state, epoch/step, loss, imgs/s, seconds since its last event and resident memory; total
  throughput; latest eval; warnings), grouped by host and collapsed to one row per host when
  the terminal is too short. Stalled, failed and slow ranks are highlighted. Milestones scroll
  above it; at the end, a summary table and, on failure, a root-cause panel.
* ``PlainRenderer`` for pipes and files: one timestamped line per thing that happened, and the
  same summary as plain text, never an escape sequence.
* ``JsonRenderer`` (``--json``): every event as one JSON line, for other tools.

``make_renderer(stream)`` picks one. The dashboard's bookkeeping is ``progress.LiveState``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from typing import Any, TextIO

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cluster.devices import backend_label
from cluster.plan import LaunchPlan
from launcher.formatting import (exit_text, fmt_ago, fmt_bytes, fmt_duration, fmt_num, fmt_span,
                                 fmt_top1, who)
from launcher.planview import plan_renderables, start_line
from launcher.procstat import read_rss
from launcher.progress import LiveState, RankView, RunProgress, RunSummary
from launcher.summaryview import root_cause_lines, summary_rows
from wrn.hostname import local_names


# -- interface --------------------------------------------------------------------------------------
class Renderer:
    """Receives what happens during a run. Every method may be called from the supervisor's
    main thread only; the default implementation shows nothing."""

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


# -- the live dashboard -------------------------------------------------------------------------------
class _DropTable(Table):
    """A Table that leaves out the columns (by index) in ``drop``, so rows can always be
    built with every cell."""

    def __init__(self, drop: set[int], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drop, self._added = drop, 0

    def add_column(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        index, self._added = self._added, self._added + 1
        if index not in self._drop:
            super().add_column(*args, **kwargs)

    def add_row(self, *cells: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().add_row(*(c for i, c in enumerate(cells) if i not in self._drop), **kwargs)


#: Short state names for the per-host rows of the collapsed view.
SHORT_STATE = {"training": "run", "starting": "start", "finished": "fin", "waiting": "wait",
               "stalled": "STALL", "failed": "FAIL", "killed": "kill", "stopped": "stop"}
STATE_STYLE = {"waiting": "dim", "starting": "cyan", "training": "green", "finished": "green",
               "done": "dim green", "stopped": "yellow", "failed": "bold red", "killed": "bold red"}
PROBLEM_STYLE = {"stalled": "bold white on red", "failed": "bold red", "slow": "bold yellow",
                 "quiet": "yellow"}
#: How many recent warnings the dashboard lists (counts of all of them are shown too).
DASHBOARD_WARNINGS = 3
_COLUMNS = ("rank", "host", "dev", "pid", "state", "ep", "step", "loss", "imgs/s", "last", "mem")


def _hosts_text(hosts: list[str]) -> str:
    if len(hosts) <= 3:
        return f"{len(hosts)} host{'s' if len(hosts) != 1 else ''}: {', '.join(hosts)}"
    return f"{len(hosts)} hosts: {hosts[0]} ... {hosts[-1]}"


def _header(state: LiveState, now: float) -> Text:
    text = Text()
    text.append(f"backend {backend_label(state.backend) if state.backend else '?'}")
    text.append(f" · {_hosts_text(state.hosts)} · world {state.world_size}")
    text.append(f" · elapsed {fmt_duration(state.elapsed(now))}")
    eta = state.progress.eta_s(now)
    if state.finished_status is None:
        text.append(f" · ETA {fmt_duration(eta)}", style="bold")
    if state.attempt > 1:
        text.append(f" · attempt {state.attempt}", style="yellow")
    return text


def _progress_line(state: LiveState) -> Table:
    prog = state.progress
    total, done = prog.total_steps, prog.done_steps
    epochs = prog.epochs
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1)
    grid.add_column(no_wrap=True, justify="right")
    label = f"epoch {prog.epoch or 0}/{epochs}" if epochs else "starting"
    pct = f"{100 * done / total:3.0f}%" if total else ""
    steps = f"step {done}/{total}" if total else ""
    grid.add_row(Text(label, style="bold"), ProgressBar(total=total or 1, completed=done if total else 0),
                 f"{pct} {steps}".strip())
    return grid


def _stats_line(state: LiveState, now: float) -> Text:
    text = Text()
    total = state.aggregate_imgs_per_s(now)
    reporting = sum(1 for v in state.ranks.values() if v.imgs_per_s is not None
                    and v.state in ("training", "starting") and not state.is_stalled(v, now))
    text.append("throughput ")
    text.append("-" if total is None else f"{total:,.1f} imgs/s", style="bold")
    if total is not None:
        text.append(f" ({reporting} rank{'s' if reporting != 1 else ''})")
    text.append(f" · loss {fmt_num(state.progress.loss)}")
    ev = state.latest_eval()
    final = _float((state.progress.finish.get(0) or {}).get("top1"))
    text.append(" · top-1 ")
    if final is not None:
        text.append(fmt_top1(final), style="bold")
        text.append(" (final)")
    elif ev:
        text.append(fmt_top1(_float(ev.get("top1"))), style="bold")
        text.append(f" (epoch {ev.get('epoch')})")
    else:
        text.append("-")
    return text


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _rank_cells(state: LiveState, view: RankView, now: float, show_host: bool) -> tuple[list, str]:
    problem = state.problem(view, now)
    status = problem if problem in ("stalled", "slow") else view.state
    style = PROBLEM_STYLE.get(problem or "", "")
    state_style = PROBLEM_STYLE.get(problem, "") if problem in ("stalled", "slow", "failed") \
        else STATE_STYLE.get(view.state, "")
    quiet = state.quiet_s(view, now)
    step = ""
    if view.step is not None:
        step = f"{view.step}/{view.steps_per_epoch}" if view.steps_per_epoch else str(view.step)
    cells = [
        Text(str(view.rank), style="bold " + style if style else "bold"),
        view.host if show_host else "",
        "" if view.device is None else str(view.device),
        "" if not view.pid else str(view.pid),
        Text(status, style=state_style),
        "" if view.epoch is None else str(view.epoch),
        step,
        fmt_num(view.loss) if view.loss is not None else "",
        "" if view.imgs_per_s is None else f"{view.imgs_per_s:,.1f}",
        Text(fmt_ago(quiet), style=style if problem in ("stalled", "quiet") else ""),
        fmt_bytes(view.rss),
    ]
    if view.exit_code not in (None, 0) or view.signal:
        cells[4] = Text(f"{status} ({view.signal or view.exit_code})", style=state_style)
    return cells, style if problem in ("stalled", "failed") else ""


def _host_cells(state: LiveState, host: str, views: list[RankView], now: float) -> list:
    counts: dict[str, int] = {}
    for v in views:
        label = state.problem(v, now) if state.problem(v, now) in ("stalled", "slow") else v.state
        counts[label] = counts.get(label, 0) + 1
    summary = Text()
    for i, (label, n) in enumerate(sorted(counts.items(), key=lambda kv: -kv[1])):
        if i:
            summary.append(" ")
        summary.append(f"{n} {SHORT_STATE.get(label, label)}",
                       style=PROBLEM_STYLE.get(label) or STATE_STYLE.get(label, ""))
    epochs = sorted({v.epoch for v in views if v.epoch is not None})
    steps = sorted({v.step for v in views if v.step is not None})
    losses = [v.loss for v in views if v.loss is not None]
    ips = [v.imgs_per_s for v in views if v.imgs_per_s is not None and not v.ended]
    quiet = [q for q in (state.quiet_s(v, now) for v in views) if q is not None]
    rss = [v.rss for v in views if v.rss is not None]
    per_epoch = next((v.steps_per_epoch for v in views if v.steps_per_epoch), None)

    def rng(values: list[int]) -> str:
        if not values:
            return ""
        return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"
    step = rng(steps) + (f"/{per_epoch}" if steps and per_epoch else "")
    devices = [v.device for v in views if v.device is not None]
    return [Text(fmt_span([v.rank for v in views]), style="bold"), host, fmt_span(devices), "", summary,
            rng(epochs), step, fmt_num(sum(losses) / len(losses)) if losses else "",
            f"{sum(ips):,.0f}" if ips else "", fmt_ago(max(quiet)) if quiet else "",
            fmt_bytes(sum(rss)) if rss else ""]


def _rank_table(state: LiveState, now: float, max_rows: int | None, width: int = 120) -> tuple[Table, int]:
    """The per-rank table, grouped by host; collapsed to one row per host (plus the ranks that
    need a look) when ``max_rows`` lines cannot hold every rank. Returns (table, lines used)."""
    groups: dict[str, list[RankView]] = {}
    for view in sorted(state.ranks.values(), key=lambda v: v.rank):
        groups.setdefault(view.host, []).append(view)
    multi = len(groups) > 1
    full_lines = len(state.ranks) + (len(groups) - 1 if multi else 0)
    collapsed = max_rows is not None and full_lines > max_rows
    # a narrow collapsed view has no room for the device column (the span of a host's devices)
    drop = {2} if collapsed and width < 100 else set()
    table = _DropTable(drop, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False,
                       expand=False, collapse_padding=True)
    for name in _COLUMNS:
        numeric = name in ("rank", "dev", "pid", "ep", "step", "loss", "imgs/s", "last", "mem")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True,
                         overflow="ellipsis", max_width=16 if name == "host" else None)
    if not collapsed:
        for g, views in enumerate(groups.values()):
            for i, view in enumerate(views):
                cells, style = _rank_cells(state, view, now, show_host=i == 0 or not multi)
                table.add_row(*cells, style=style or None,
                              end_section=multi and i == len(views) - 1 and g < len(groups) - 1)
        return table, full_lines
    # collapsed: one line per host, then (as room allows) the ranks that need a look
    budget = max(max_rows, 1)
    trouble = {host: [v for v in views if state.problem(v, now) in ("stalled", "failed", "slow")]
               for host, views in groups.items()}
    shown = list(groups)
    if len(shown) > budget:  # not even one line per host: hosts with trouble first
        keep = budget - 1
        ranked = sorted(shown, key=lambda h: (not trouble[h], shown.index(h)))[:keep]
        shown = [h for h in shown if h in ranked]
    room = budget - len(shown) - (1 if len(shown) < len(groups) else 0)
    lines = 0
    for host in shown:
        table.add_row(*_host_cells(state, host, groups[host], now), style="bold" if multi else None)
        lines += 1
        for view in trouble[host]:
            if room <= 0:
                break
            cells, style = _rank_cells(state, view, now, show_host=False)
            table.add_row(*cells, style=style or None)
            room -= 1
            lines += 1
    if len(shown) < len(groups):
        table.caption = f"... {len(groups) - len(shown)} more host(s) not shown: enlarge the terminal"
        table.caption_justify = "left"
        table.caption_style = "dim"
        lines += 1
    return table, lines


def _warnings_text(state: LiveState, width: int) -> Text | None:
    skipped = sum(state.skipped_files.values())
    restarts = state.attempt - 1
    if not state.warnings and not skipped and not restarts:
        return None
    text = Text()
    counts = []
    if skipped:
        counts.append(f"skipped images {skipped}")
    if state.stall_warnings:
        counts.append(f"stalls {state.stall_warnings}")
    if restarts:
        counts.append(f"restarts {restarts}")
    counts.append(f"warnings {len(state.warnings)}")
    text.append(" · ".join(counts), style="yellow")
    for _at, message in state.warnings[-DASHBOARD_WARNINGS:]:
        line = message.replace("\n", " ")
        if cell_len(line) > width - 2:
            line = line[:max(width - 5, 1)] + "..."
        text.append("\n" + line, style="yellow")
    return text


def _lines(text: Text, width: int) -> int:
    return sum(max(1, -(-cell_len(part) // max(width, 1))) for part in text.plain.split("\n"))


def dashboard(state: LiveState, now: float, height: int | None = None, width: int = 120) -> Panel:
    """The live view of a run: header, overall progress, per-rank table, throughput, latest
    eval and warnings, sized for a ``width`` x ``height`` terminal (rows collapse per host when
    ``height`` lines cannot hold every rank; None: never collapse)."""
    inner = max(width - 4, 20)
    header = _header(state, now)
    stats = _stats_line(state, now)
    warn = _warnings_text(state, inner)
    used = 2 + _lines(header, inner) + 1 + _lines(stats, inner) + 2  # borders, bar, table head
    if warn is not None:
        used += _lines(warn, inner)
    budget = None if height is None else max(height - used, 2)
    table, _ = _rank_table(state, now, budget, width)
    parts: list[Any] = [header, _progress_line(state), stats, table]
    if warn is not None:
        parts.append(warn)
    title = Text(f"wrn-launch · {state.name}" if state.name else "wrn-launch", style="bold")
    if state.finished_status:
        title.append(f" · {state.finished_status}",
                     style="bold green" if state.finished_status == "succeeded" else "bold red")
    return Panel(Group(*parts), title=title, title_align="left", border_style="blue",
                 padding=(0, 1))


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
    ``process_exited``, ``message`` or ``summary``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def _write(self, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n")
        self.stream.flush()

    def _launcher(self, event: str, **fields: Any) -> None:
        self._write({"source": "launcher", "event": event, "time": round(time.time(), 3), **fields})

    def show_plan(self, plan: LaunchPlan, notes: dict[str, Any]) -> None:
        self._launcher("plan", plan=plan.to_dict(), notes=notes)

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

    def finished(self, summary: RunSummary) -> None:
        self._launcher("summary", **summary.to_dict(),
                       root_cause=summary.root_cause.to_dict() if summary.root_cause else None)


def make_renderer(stream: TextIO | None = None, *, plain: bool = False, json_lines: bool = False,
                  stall_after: float = 300.0) -> Renderer:
    """The renderer for ``stream``: ``JsonRenderer`` with ``json_lines``; else the live
    ``RichRenderer`` when ``stream`` is a terminal (and TERM is not dumb) and not ``plain``;
    else ``PlainRenderer``. ``stall_after`` is --stall-timeout (when the dashboard says stalled)."""
    stream = stream or sys.stdout
    if json_lines:
        return JsonRenderer(stream)
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    if is_tty and not plain and os.environ.get("TERM") != "dumb":
        return RichRenderer(Console(file=stream), stall_after=stall_after)
    return PlainRenderer(stream)
