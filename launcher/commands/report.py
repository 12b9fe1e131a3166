"""``wrn-launch report RUN_DIR``: what a run did, in the terminal and as a plot image.

The terminal gets the summary (status, times, devices, model, final loss, accuracy,
throughput, checkpoint, root cause), a per-epoch table, and the loss and accuracy curves as
text charts. ``report.svg`` is written into the run directory (``--plot FILE`` elsewhere,
``--no-plot`` not at all): the training loss per logged step with the per-epoch mean, and the
top-1 accuracy per evaluated epoch. The SVG is plain XML written here; it needs no plotting
library and opens in any browser.

``--modelzoo [--lang en|zh] [-o FILE]`` prints instead the two performance tables of a
MindSpore ModelZoo README (training, inference) in Markdown, filled from the run
(``launcher.ui.modelzoo``), and writes no plot.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import escape

from rich import box
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from launcher import PROG
from launcher.commands.common import STATUS_STYLE, error, output_console, run_alone, write_output
from launcher.rundir.reading import LoadedRun, RunDirError, load_run
from launcher.ui.formatting import cells, fmt_duration, fmt_loss, fmt_top1, fmt_when
from wrn.fileio import write_atomic

PLOT_NAME = "report.svg"
#: The languages of ``--modelzoo`` (``launcher.ui.modelzoo.LANGS``, which is imported only when
#: the tables are made: every command line builds this parser).
LANGS = ("en", "zh")
SPARK = "▁▂▃▄▅▆▇█"


# -- text charts ---------------------------------------------------------------------------------------
def sparkline(values: Sequence[float], width: int = 40) -> str:
    """Values as a one-line bar chart of at most ``width`` cells (bucket means when longer)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values or width < 1:
        return ""
    if len(values) > width:
        buckets = [values[i * len(values) // width:(i + 1) * len(values) // width] for i in range(width)]
        values = [sum(b) / len(b) for b in buckets if b]
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1) + 0.5))] for v in values)


def text_chart(points: Sequence[tuple[float, float]], width: int = 60, height: int = 8,
               y_fmt: str = "{:.3g}", y_range: tuple[float, float] | None = None) -> list[str]:
    """A line chart in characters: ``height`` rows of ``width`` plot cells, a y axis labelled
    with the top, middle and bottom values, and the x range under it. Points that fall into the
    same column are averaged (``•``); the columns between points are interpolated (``·``)."""
    points = [(float(x), float(y)) for x, y in points if y is not None and math.isfinite(y)]
    if not points:
        return ["(no data)"]
    width, height = max(width, 4), max(height, 2)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = y_range if y_range else (min(ys), max(ys))
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    cols: dict[int, list[float]] = {}
    for x, y in points:
        c = 0 if x1 == x0 else round((x - x0) / (x1 - x0) * (width - 1))
        cols.setdefault(c, []).append(y)
    grid = [[" "] * width for _ in range(height)]

    def row_of(y: float) -> int:
        return min(height - 1, max(0, round((y1 - y) / (y1 - y0) * (height - 1))))
    means = {c: sum(v) / len(v) for c, v in cols.items()}
    order = sorted(means)
    for a, b in zip(order, order[1:]):  # the line between neighbouring points
        for c in range(a + 1, b):
            grid[row_of(means[a] + (means[b] - means[a]) * (c - a) / (b - a))][c] = "·"
    for c in order:
        grid[row_of(means[c])][c] = "•"
    labels = {0: y_fmt.format(y1), height - 1: y_fmt.format(y0)}
    if height >= 5:
        labels[(height - 1) // 2] = y_fmt.format(y1 - (y1 - y0) * ((height - 1) // 2) / (height - 1))
    pad = max(len(s) for s in labels.values())
    lines = [f"{labels.get(i, ''):>{pad}} {'┤' if i in labels else '│'}{''.join(row)}"
             for i, row in enumerate(grid)]
    lines.append(" " * pad + " └" + "─" * width)
    left, right = f"{x0:g}", f"{x1:g}"
    lines.append(" " * (pad + 2) + left + " " * max(1, width - len(left) - len(right)) + right)
    return lines


# -- the terminal report ---------------------------------------------------------------------------------
def summary_table(record: LoadedRun) -> Table:
    """Key/value rows describing the run as a whole."""
    table = Table(box=box.SIMPLE, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    start = record.start_event
    status = record.status
    rows: list[tuple[str, Any]] = [
        ("run", str(record.path)),
        ("status", Text(status + (f" (exit code {record.record.exit_code})"
                                  if record.record.exit_code not in (None, 0) else ""),
                        style=STATUS_STYLE.get(status, ""))),
        ("started", fmt_when(record.start)),
        ("duration", fmt_duration(record.duration_s)),
        ("devices", record.devices + (f" ({', '.join(record.hosts)})" if record.hosts else "")),
    ]
    if start:
        model = str(start.model)
        if start.params is not None:
            model += f" ({start.params:,} parameters)"
        rows.append(("model", model))
        if start.batch_size and record.world_size:
            rows.append(("batch", f"{start.batch_size} per device x {record.world_size} = "
                                  f"{start.batch_size * record.world_size}"))
    epochs = record.epochs()
    total = start.epochs if start else None
    done = max((r.epoch for r in epochs if r.loss is not None), default=0)
    rows.append(("epochs", f"{done}/{total}" if total else str(done)))
    rows.append(("final loss", fmt_loss(record.final_loss)))
    top1 = fmt_top1(record.top1)
    if record.eval and record.eval.get("correct") is not None:
        top1 += f" ({record.eval.get('correct')}/{record.eval.get('total')} test images)"
    rows.append(("accuracy (top-1)", top1))
    ips = record.imgs_per_s
    rows.append(("throughput", "-" if ips is None else f"{ips:,.1f} imgs/s"))
    if record.summary.get("best_checkpoint"):
        rows.append(("best checkpoint", record.summary["best_checkpoint"]))
    sync = record.summary.get("replicas_in_sync")
    if sync is not None:
        rows.append(("replicas", Text("in sync", style="green") if sync else
                     Text("DIVERGED (parameter checksums differ)", style="bold red")))
    attempts = record.record.attempts
    if attempts:
        rows.append(("attempts", f"{len(attempts) + 1} ({len(attempts)} earlier, see logs/attempt-N)"))
    if record.skipped_files:
        rows.append(("skipped images", str(record.skipped_files)))
    cause = record.record.root_cause
    if isinstance(cause, dict):
        who = f"rank {cause['rank']}" if cause.get("rank") is not None else cause.get("name")
        text = f"{who} on {cause.get('host')} {cause.get('reason')}"
        if cause.get("error"):
            text += f": {cause['error']}"
        if cause.get("log"):
            text += f" (log: {cause['log']})"
        rows.append(("root cause", Text(text, style="red")))
    if record.bad_lines:
        rows.append(("note", f"{record.bad_lines} unreadable line(s) in metrics.jsonl skipped"))
    for key, value in rows:
        table.add_row(*cells(key, value))
    return table


def epoch_table(record: LoadedRun) -> Table:
    """One row per epoch: mean loss, seconds, throughput, top-1, checkpoint."""
    table = Table(title="per epoch", box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for name in ("epoch", "loss", "time", "imgs/s", "top-1", "ckpt"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in record.epochs():
        table.add_row(*cells(str(row.epoch), fmt_loss(row.loss), fmt_duration(row.seconds),
                      "-" if row.imgs_per_s is None else f"{row.imgs_per_s:,.1f}",
                      fmt_top1(row.top1) if row.top1 is not None else "", "✓" if row.checkpoint else ""))
    return table


def curves(record: LoadedRun, width: int) -> list[Any]:
    """The loss and accuracy curves as text charts for a ``width``-column terminal."""
    out: list[Any] = []
    plot_w = max(20, min(width - 14, 100))
    losses = record.step_losses()
    if losses:
        out.append(Text(f"training loss per logged step (rank 0, {len(losses)} points)  "
                        f"{sparkline([v for _, v in losses], min(30, plot_w))}", style="bold"))
        out.append(Text("\n".join(text_chart(losses, plot_w, 8)) + "\n      global step", style="cyan"))
    acc = record.accuracy()
    if acc:
        pct = [(e, v * 100 if v <= 1.0 else v) for e, v in acc]
        out.append(Text(f"top-1 accuracy per evaluated epoch ({len(acc)} evaluation(s)): "
                        + ", ".join(f"e{e} {v:.1f}%" for e, v in pct), style="bold"))
        if len(acc) > 1:
            lo = max(0.0, math.floor(min(v for _, v in pct) / 10) * 10)
            out.append(Text("\n".join(text_chart(pct, min(plot_w, 60), 6, "{:.0f}%", (lo, 100.0)))
                            + "\n      epoch", style="green"))
    if not out:
        out.append(Text("no step or evaluation events in metrics.jsonl yet", style="dim"))
    return out


def report_renderables(record: LoadedRun, width: int = 100, plot: str | None = None) -> list[Any]:
    """Everything ``wrn-launch report`` prints, for a ``width``-column console."""
    out: list[Any] = [Panel(summary_table(record), title=Text(f"{PROG} report · {record.name}", style="bold"),
                            title_align="left", border_style="blue", expand=False)]
    if record.epochs():
        out.append(epoch_table(record))
    out.extend(curves(record, width))
    if plot:
        out.append(Text(f"plot: {plot}", style="bold"))
    return out


# -- the SVG plot ----------------------------------------------------------------------------------------
def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi] (steps of 1, 2 or 5 x 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, value = [], first
    while value <= hi + step * 0.5 and len(ticks) < 50:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _fmt_tick(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def _panel(x: float, y: float, w: float, h: float, title: str, xlabel: str,
           series: list[dict[str, Any]], y_range: tuple[float, float] | None = None,
           y_suffix: str = "", x_range: tuple[float, float] | None = None,
           legend: str = "top") -> list[str]:
    """SVG elements of one chart: frame, grid, ticks, labels, one polyline (and optional
    markers) per series ``{"points", "color", "label", "markers"}``; the legend sits in the
    top or bottom right corner."""
    pts = [p for s in series for p in s["points"]]
    out = ['<g class="chart">', f'<text x="{x}" y="{y - 10}" font-size="15" font-weight="bold">'
                                 f'{escape(title)}</text>',
           f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="#ffffff" stroke="#888888"/>']
    if not pts:
        out += [f'<text x="{x + w / 2}" y="{y + h / 2}" text-anchor="middle" fill="#888888">no data</text>', "</g>"]
        return out
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xt = nice_ticks(*(x_range or (min(xs), max(xs))), 6)
    yt = nice_ticks(*(y_range or (min(ys), max(ys))), 5)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1

    def px(v: float) -> float:
        return round(x + (v - x0) / (x1 - x0) * w, 2)

    def py(v: float) -> float:
        return round(y + h - (v - y0) / (y1 - y0) * h, 2)
    for t in xt:
        out.append(f'<line x1="{px(t)}" y1="{y}" x2="{px(t)}" y2="{y + h}" stroke="#eeeeee"/>')
        out.append(f'<text x="{px(t)}" y="{y + h + 16}" text-anchor="middle" font-size="11">{_fmt_tick(t)}</text>')
    for t in yt:
        out.append(f'<line x1="{x}" y1="{py(t)}" x2="{x + w}" y2="{py(t)}" stroke="#eeeeee"/>')
        out.append(f'<text x="{x - 6}" y="{py(t) + 4}" text-anchor="end" font-size="11">'
                   f'{_fmt_tick(t)}{y_suffix}</text>')
    out.append(f'<text x="{x + w / 2}" y="{y + h + 34}" text-anchor="middle" font-size="12">{escape(xlabel)}</text>')
    for i, s in enumerate(series):
        if not s["points"]:
            continue
        coords = " ".join(f"{px(a)},{py(b)}" for a, b in s["points"])
        out.append(f'<polyline class="series" data-label="{escape(s["label"])}" points="{coords}" '
                   f'fill="none" stroke="{s["color"]}" stroke-width="{s.get("stroke", 1.5)}"/>')
        if s.get("markers"):
            out += [f'<circle cx="{px(a)}" cy="{py(b)}" r="3.5" fill="{s["color"]}"/>' for a, b in s["points"]]
        lx = x + w - 190
        ly = y + 18 + 18 * i if legend == "top" else y + h - 10 - 18 * (len(series) - 1 - i)
        out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 20}" y2="{ly - 4}" stroke="{s["color"]}" '
                   f'stroke-width="2"/>')
        out.append(f'<text x="{lx + 26}" y="{ly}" font-size="12">{escape(s["label"])}</text>')
    out.append("</g>")
    return out


def svg_document(record: LoadedRun) -> str:
    """The report plot as an SVG document: loss per step (and per-epoch mean) over global steps,
    top-1 accuracy over epochs."""
    width, height = 900, 660
    steps = record.step_losses()
    per_epoch = record.epochs()
    start = record.start_event
    spe = start.steps_per_epoch if start else None
    epoch_means = [(r.epoch * spe, r.loss) for r in per_epoch if r.loss is not None and spe is not None]
    acc = [(e, v * 100 if v <= 1.0 else v) for e, v in record.accuracy()]
    status = record.status
    head = f"{record.name} · {status} · {record.devices} · final loss {fmt_loss(record.final_loss)} · " \
           f"top-1 {fmt_top1(record.top1)}"
    body = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
            f"<title>{escape(PROG)} report: {escape(record.name)}</title>",
            f'<rect width="{width}" height="{height}" fill="#fafafa"/>',
            f'<text x="20" y="28" font-size="17" font-weight="bold">{escape(head)}</text>']
    total_epochs = start.epochs if start else None
    total_steps = total_epochs * spe if total_epochs is not None and spe is not None else None
    body += _panel(80, 70, 780, 230, "training loss", "global step",
                   [{"points": steps, "color": "#1f77b4", "label": "loss per logged step (rank 0)", "stroke": 1.2},
                    {"points": epoch_means, "color": "#ff7f0e", "label": "epoch mean (all ranks)",
                     "markers": True, "stroke": 2}],
                   x_range=(0, total_steps) if total_steps else None)
    lo = max(0.0, math.floor(min((v for _, v in acc), default=0.0) / 10) * 10)
    body += _panel(80, 380, 780, 210, "top-1 accuracy (test split)", "epoch",
                   [{"points": acc, "color": "#2ca02c", "label": "top-1 after epoch", "markers": True, "stroke": 2}],
                   y_range=(lo, 100.0), y_suffix="%", legend="bottom",
                   x_range=(0, total_epochs) if isinstance(total_epochs, int) else None)
    body.append("</svg>")
    return "\n".join(body) + "\n"


def write_svg(record: LoadedRun, path: str | Path) -> Path:
    """Write ``svg_document(record)`` to ``path`` atomically; returns the path."""
    return write_atomic(path, svg_document(record))


#: The command's line in ``wrn-launch --help``, and what ``wrn-launch report --help`` says it does.
HELP = "summary, curves and plot of a run"
DESCRIPTION = ("Summarise a run: summary, "
               "per-epoch table, loss and accuracy curves, and a plot image "
               f"(RUN_DIR/{PLOT_NAME}). With --modelzoo: the MindSpore ModelZoo README "
               "performance tables of the run, in Markdown (--lang en|zh).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``wrn-launch report``."""
    p.add_argument("run_dir", metavar="RUN_DIR")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--plot", metavar="FILE", help=f"write the plot here (default RUN_DIR/{PLOT_NAME})")
    where.add_argument("--no-plot", action="store_true", help="write no plot file")
    where.add_argument("--modelzoo", action="store_true",
                       help="print the ModelZoo README performance tables (training, inference) "
                            "as Markdown instead, filled from the run; writes no plot")
    p.add_argument("--lang", choices=LANGS, default=None,
                   help="language of the --modelzoo tables: en (default) or zh")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the --modelzoo tables to FILE instead of printing them")


def run_modelzoo(record: LoadedRun, lang: str, output: str | None, stream: TextIO | None) -> int:
    """``report --modelzoo``: the tables on ``stream`` (stdout) or into ``output``."""
    from launcher.rundir.artifacts import read_artifacts
    from launcher.ui.modelzoo import modelzoo_markdown

    text = modelzoo_markdown(record, read_artifacts(record, count_parameters=True), lang)
    if output:
        return 0 if write_output("report", output, text) is not None else 2
    (stream or sys.stdout).write(text)
    return 0


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """``wrn-launch report RUN_DIR [--plot FILE | --no-plot | --modelzoo [--lang L] [-o FILE]]``;
    returns the exit status."""
    if not args.modelzoo and (args.lang is not None or args.output is not None):
        return error("report", "--lang and -o/--output go with --modelzoo (the ModelZoo tables); "
                               "the plot's file is --plot FILE")
    console = output_console(stream)
    try:
        record = load_run(args.run_dir)
    except RunDirError as exc:
        return error("report", str(exc))
    if args.modelzoo:
        return run_modelzoo(record, args.lang or "en", args.output, stream)
    plot = None
    if not args.no_plot:
        target = Path(args.plot) if args.plot else record.path / PLOT_NAME
        try:
            plot = str(write_svg(record, target))
        except OSError as exc:
            error("report", f"cannot write the plot {target}: {exc.strerror or exc}; pass --plot FILE "
                            f"somewhere writable, or --no-plot")
            return 2
    for item in report_renderables(record, console.size.width, plot):
        console.print(item)
    return 0


def main(argv: Sequence[str] | None = None, stream: TextIO | None = None) -> int:
    """``wrn-launch report`` on its own (the CLI builds the same parser as a subcommand)."""
    return run_alone("report", DESCRIPTION, add_arguments, run, argv, stream)

if __name__ == "__main__":
    sys.exit(main())
