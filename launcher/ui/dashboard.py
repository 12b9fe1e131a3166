"""The live Rich dashboard of a run (``dashboard``): run name, backend, hosts, world size,
elapsed and ETA; overall progress; one row per rank with host, device, pid, state, epoch/step,
loss, imgs/s, seconds since its last event and resident memory; total throughput; latest eval;
warnings. Rows are grouped by host and collapsed to one row per host when the terminal is too
short; stalled, failed and slow ranks are highlighted. Layout only: the bookkeeping behind it
is the run's ``RunBoard`` (``launcher.supervise.ranks``), the state every view reads."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cluster.devices import backend_label
from launcher.supervise.ranks import ProcessState, RunBoard
from launcher.ui.formatting import cells as as_cells
from launcher.ui.formatting import fmt_ago, fmt_bytes, fmt_duration, fmt_num, fmt_span, fmt_top1


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
        super().add_row(*as_cells(*(c for i, c in enumerate(cells) if i not in self._drop)), **kwargs)


#: Short state names for the per-host rows of the collapsed view.
SHORT_STATE = {"training": "run", "starting": "start", "finished": "fin", "waiting": "wait",
               "stalled": "STALL", "failed": "FAIL", "killed": "kill", "stopped": "stop",
               "lost": "lost"}
STATE_STYLE = {"waiting": "dim", "starting": "cyan", "training": "green", "finished": "green",
               "done": "dim green", "stopped": "yellow", "failed": "bold red", "killed": "bold red",
               "lost": "bold red"}
PROBLEM_STYLE = {"stalled": "bold white on red", "failed": "bold red", "slow": "bold yellow",
                 "quiet": "yellow"}
#: How many recent warnings the dashboard lists (counts of all of them are shown too).
DASHBOARD_WARNINGS = 3
_COLUMNS = ("rank", "host", "dev", "pid", "state", "ep", "step", "loss", "imgs/s", "last", "mem")


def _hosts_text(hosts: list[str]) -> str:
    if len(hosts) <= 3:
        return f"{len(hosts)} host{'s' if len(hosts) != 1 else ''}: {', '.join(hosts)}"
    return f"{len(hosts)} hosts: {hosts[0]} ... {hosts[-1]}"


def _header(state: RunBoard, now: float) -> Text:
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


def _progress_line(state: RunBoard) -> Table:
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


def _stats_line(state: RunBoard, now: float) -> Text:
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
    finish = state.progress.finish.get(0)
    final = finish.top1 if finish else None
    text.append(" · top-1 ")
    if final is not None:
        text.append(fmt_top1(final), style="bold")
        text.append(" (final)")
    elif ev:
        text.append(fmt_top1(ev.top1), style="bold")
        text.append(f" (epoch {ev.epoch})")
    else:
        text.append("-")
    return text


def _rank_cells(state: RunBoard, view: ProcessState, now: float, show_host: bool) -> tuple[list, str]:
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


def _host_cells(state: RunBoard, host: str, views: list[ProcessState], now: float) -> list:
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
    return [Text(fmt_span([v.rank for v in views]), style="bold"), host, fmt_span(devices), "",
            summary, rng(epochs), step, fmt_num(sum(losses) / len(losses)) if losses else "",
            f"{sum(ips):,.0f}" if ips else "", fmt_ago(max(quiet)) if quiet else "",
            fmt_bytes(sum(rss)) if rss else ""]


def _rank_table(state: RunBoard, now: float, max_rows: int | None, width: int = 120) -> tuple[Table, int]:
    """The per-rank table, grouped by host; collapsed to one row per host (plus the ranks that
    need a look) when ``max_rows`` lines cannot hold every rank. Returns (table, lines used)."""
    groups: dict[str, list[ProcessState]] = {}
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


def _warnings_text(state: RunBoard, width: int) -> Text | None:
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


def dashboard(state: RunBoard, now: float, height: int | None = None, width: int = 120) -> Panel:
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
