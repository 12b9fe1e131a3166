"""The end of a run as the user sees it: the rows of the final summary and the text of the
root-cause panel shown when a run fails (the renderers lay them out)."""

from __future__ import annotations

import os

from launcher.supervise.result import RootCause, RunSummary
from launcher.ui.formatting import fmt_duration, fmt_num, fmt_top1


def summary_rows(summary: RunSummary) -> list[tuple[str, str]]:
    """(label, value) rows of the final summary."""
    replicas = {True: "replicas in sync", False: "replicas DIVERGED (parameter checksums differ)",
                None: "-"}[summary.replicas_in_sync]
    if summary.replicas_in_sync and len(summary.checksums) == 1:
        replicas = "a single replica (nothing to compare)"
    rows = [
        ("status", summary.status + (f" ({summary.note})" if summary.note else "")),
        ("exit code", str(summary.exit_code)),
        ("wall time", fmt_duration(summary.wall_s)),
        ("throughput", "-" if summary.imgs_per_s is None else f"{summary.imgs_per_s:,.1f} imgs/s"),
        ("final loss", fmt_num(summary.final_loss)),
        ("accuracy (top-1)", fmt_top1(summary.top1)),
        ("best checkpoint", summary.best_checkpoint or "-"),
        ("replicas", replicas),
        *([("stragglers", "; ".join(f"rank {s.get('rank')} ({s.get('ratio')}x the others' "
                                    f"time per step from step {s.get('since_step')})"
                                    for s in summary.stragglers))] if summary.stragglers else []),
        ("run dir", summary.run_dir),
    ]
    if summary.hosts_dropped:
        rows.insert(2, ("hosts left out", "; ".join(summary.hosts_dropped)))
    return rows


def root_cause_lines(cause: RootCause, run_dir: str) -> tuple[str, list[str]]:
    """(title, body lines) of the root-cause panel."""
    title = f"root cause: {cause.who} on {cause.host} {cause.reason}"
    body = []
    if cause.error:
        body.append(f"error: {cause.error}")
    if cause.where:
        body.append("where each rank was:")
        body.extend("  " + line for line in cause.where)
    if cause.diagnostics:
        body.append(f"stacks of every rank: {os.path.join(run_dir, cause.diagnostics)}")
    if cause.log:
        path = os.path.join(run_dir, cause.log)
        if cause.log_tail:
            body.append(f"last {len(cause.log_tail)} lines of {cause.log}:")
            body.extend("  " + line for line in cause.log_tail)
        else:
            body.append(f"(no output in {cause.log})")
        body.append(f"log: {path}")
    return title, body
