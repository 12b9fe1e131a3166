"""What the user sees. The supervisor only calls the ``Renderer`` interface; it never prints.

Two renderers exist:

* ``RichRenderer`` for a terminal: a live progress bar (steps, loss, throughput, ETA) with
  messages scrolling above it, then a summary table and, on failure, a root-cause panel.
* ``PlainRenderer`` for pipes and files: one timestamped line per thing that happened, and the
  same summary as plain text, never an escape sequence.

``make_renderer(stream)`` picks one. A richer per-rank dashboard is another subclass.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from typing import Any, TextIO

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from cluster.devices import backend_label
from cluster.plan import LaunchPlan
from launcher.progress import RootCause, RunProgress, RunSummary


# -- formatting helpers ---------------------------------------------------------------------------
def fmt_duration(seconds: float | None) -> str:
    """``7.25`` -> ``"7.2 s"``; ``75.3`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``; None -> ``"-"``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_num(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def fmt_top1(value: float | None) -> str:
    """Accuracy as a percentage (fractions <= 1 are scaled)."""
    if value is None:
        return "-"
    return f"{value * 100:.2f}%" if value <= 1.0 else f"{value:.2f}%"


def exit_text(exit_code: int | None, signal: str | None) -> str:
    """``"exited with code 3"`` / ``"killed by SIGKILL"``."""
    if signal:
        return f"killed by {signal}"
    return f"exited with code {exit_code}"


def who(name: str, rank: int | None) -> str:
    return f"rank {rank}" if rank is not None else name


def differing_env(plan: LaunchPlan) -> tuple[list[str], dict[str, str]]:
    """Names of the worker variables that differ between ranks, and the ones common to all."""
    workers = [p for p in plan.processes if p.role == "worker"]
    keys = sorted({k for p in workers for k in p.env})
    varying = [k for k in keys if len({p.env.get(k) for p in workers}) > 1]
    common = {k: workers[0].env[k] for k in keys if k not in varying and k in workers[0].env}
    return varying, common


def plan_renderables(plan: LaunchPlan, notes: dict[str, Any]) -> list[Any]:
    """Rich renderables describing a plan (``--dry-run``)."""
    varying, common = differing_env(plan)
    head = Text()
    head.append(f"backend: {backend_label(plan.backend)}", style="bold")
    for key, value in notes.items():
        head.append(f"\n{key}: {value}")
    table = Table(title="ranks", box=box.SIMPLE_HEAD, show_lines=False)
    for col in ("rank", "local_rank", "node_rank", "host", "device_id", "threads", "cores", "env (per rank)"):
        table.add_column(col, overflow="fold")
    for r in plan.ranks:
        proc = plan.worker(r.rank)
        cpus = ",".join(map(str, proc.cpus)) if proc.cpus else "-"
        env = " ".join(f"{k}={proc.env[k]}" for k in varying if k in proc.env)
        table.add_row(str(r.rank), str(r.local_rank), str(r.node_rank), r.host, str(r.device_id),
                      str(proc.threads), cpus, env)
    out: list[Any] = [head, table]
    env_text = Text("environment (every worker):\n", style="bold")
    for key, value in common.items():
        env_text.append(f"  {key}={value}\n")
    unset = plan.processes[-1].unset
    if unset:
        env_text.append(f"  removed if set: {' '.join(unset)}\n")
    out.append(env_text)
    cmd = Text("commands:\n", style="bold")
    for proc in plan.processes:
        if proc.role == "scheduler" or proc.rank == 0:
            label = "scheduler" if proc.role == "scheduler" else "workers"
            cmd.append(f"  {label}: {' '.join(proc.argv)}\n")
    if plan.scheduler:
        sched = next((p for p in plan.processes if p.role == "scheduler"), None)
        extra = " ".join(f"{k}={sched.env[k]}" for k in ("MS_ROLE",)) if sched else "(not started)"
        cmd.append(f"  scheduler address: {plan.scheduler[0]}:{plan.scheduler[1]} {extra} (a free port "
                   f"now; a real launch picks again)\n")
    out.append(cmd)
    if plan.rank_table:
        out.append(Text(f"rank table ({os.path.join(plan.run_dir, 'rank_table.json')}):", style="bold"))
        out.append(Text(plan.rank_table.rstrip("\n")))
    for warning in plan.warnings:
        out.append(Text(f"warning: {warning}", style="yellow"))
    return out


def start_line(plan: LaunchPlan, notes: dict[str, Any]) -> str:
    """``backend CPU (detected): 2 worker(s) on h1, 1 thread(s) each, scheduler 127.0.0.1:29512``."""
    threads = sorted({p.threads for p in plan.processes if p.role == "worker"})
    how = f" ({notes['chosen']})" if notes.get("chosen") else ""
    sched = ""
    if plan.scheduler and any(p.role == "scheduler" for p in plan.processes):
        sched = f", scheduler {plan.scheduler[0]}:{plan.scheduler[1]}"
    return (f"backend {backend_label(plan.backend)}{how}: {plan.world_size} worker(s) on "
            f"{', '.join(plan.hosts)}, {'/'.join(map(str, threads))} thread(s) each{sched}")


def summary_rows(summary: RunSummary) -> list[tuple[str, str]]:
    """(label, value) rows of the final summary."""
    replicas = {True: "replicas in sync", False: "replicas DIVERGED (parameter checksums differ)",
                None: "-"}[summary.replicas_in_sync]
    if summary.replicas_in_sync and len(summary.checksums) == 1:
        replicas = "a single replica (nothing to compare)"
    return [
        ("status", summary.status + (f" ({summary.note})" if summary.note else "")),
        ("exit code", str(summary.exit_code)),
        ("wall time", fmt_duration(summary.wall_s)),
        ("throughput", "-" if summary.imgs_per_s is None else f"{summary.imgs_per_s:,.1f} imgs/s"),
        ("final loss", fmt_num(summary.final_loss)),
        ("accuracy (top-1)", fmt_top1(summary.top1)),
        ("best checkpoint", summary.best_checkpoint or "-"),
        ("replicas", replicas),
        ("run dir", summary.run_dir),
    ]


def root_cause_lines(cause: RootCause, run_dir: str) -> tuple[str, list[str]]:
    """(title, body lines) of the root-cause panel."""
    title = f"root cause: {cause.who} on {cause.host} {cause.reason}"
    body = []
    if cause.error:
        body.append(f"error: {cause.error}")
    if cause.log:
        path = os.path.join(run_dir, cause.log)
        if cause.log_tail:
            body.append(f"last {len(cause.log_tail)} lines of {cause.log}:")
            body.extend("  " + line for line in cause.log_tail)
        else:
            body.append(f"(no output in {cause.log})")
        body.append(f"log: {path}")
    return title, body


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


class RichRenderer(Renderer):
    """Live progress bar in a terminal; messages scroll above it."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.completed}/{task.fields[total_text]} steps"),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[ips]} imgs/s"),
            TextColumn("ETA {task.fields[eta]}"), TextColumn("[dim]{task.fields[elapsed]}"),
            console=self.console, transient=False, redirect_stdout=False, redirect_stderr=False)
        self.task = None
        self.t0 = time.time()

    def _print(self, *items: Any) -> None:
        self.progress.console.print(*items)

    def show_plan(self, plan: LaunchPlan, notes: dict[str, Any]) -> None:
        for item in plan_renderables(plan, notes):
            self.console.print(item)

    def run_started(self, plan: LaunchPlan, run_dir: str, notes: dict[str, Any]) -> None:
        self._print(Text(f"run dir {run_dir}", style="bold"))
        self._print(Text(start_line(plan, notes)))
        for warning in plan.warnings:
            self._print(Text(f"warning: {warning}", style="yellow"))
        self.t0 = time.time()
        self.task = self.progress.add_task("starting", total=None, loss="-", ips="-", eta="-",
                                           elapsed=fmt_duration(0), total_text="?")
        self.progress.start()

    def process_started(self, name, rank, host, pid) -> None:
        pass  # the progress bar says "starting"; pids are in run.json

    def process_exited(self, name, rank, host, exit_code, signal, expected) -> None:
        if not expected:
            self._print(Text(f"{who(name, rank)} on {host} {exit_text(exit_code, signal)}", style="bold red"))

    def event(self, host: str, record: dict[str, Any], progress: RunProgress) -> None:
        kind = record.get("event")
        milestone = record.get("rank") == 0 and kind in ("start", "epoch_end", "eval", "checkpoint")
        if kind in ("error", "warning") or milestone:
            line = describe_event(record, progress, time.time())
            if line:
                style = {"error": "bold red", "warning": "yellow"}.get(kind, "")
                self._print(Text(line, style=style))
        self.tick(progress)

    def tick(self, progress: RunProgress) -> None:
        if self.task is None:
            return
        total = progress.total_steps
        desc = f"epoch {progress.epoch}/{progress.epochs}" if progress.epoch else "starting"
        ips = progress.imgs_per_s
        self.progress.update(self.task, description=desc, total=total, completed=progress.done_steps,
                             loss=fmt_num(progress.loss), ips="-" if ips is None else f"{ips:,.1f}",
                             eta=fmt_duration(progress.eta_s(time.time())),
                             elapsed=fmt_duration(time.time() - self.t0),
                             total_text=str(total) if total else "?")

    def message(self, level: str, text: str) -> None:
        style = {"warning": "yellow", "error": "bold red"}.get(level, "")
        self._print(Text(text if level == "info" else f"{level}: {text}", style=style))

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
        if self.task is not None:
            self.progress.stop()
            self.task = None


def make_renderer(stream: TextIO | None = None) -> Renderer:
    """``RichRenderer`` when ``stream`` is a terminal, else ``PlainRenderer``."""
    stream = stream or sys.stdout
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    if is_tty and os.environ.get("TERM") != "dumb":
        return RichRenderer(Console(file=stream))
    return PlainRenderer(stream)
