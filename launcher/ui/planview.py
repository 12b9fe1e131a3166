"""The launch plan as the user sees it: the full description ``--dry-run`` prints
(``plan_renderables``) and the one line a real launch starts with (``start_line``)."""

from __future__ import annotations

import os
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from cluster.devices import backend_label
from cluster.hosts import mask_env
from cluster.plan import LaunchPlan
from launcher.ui.formatting import cells
from wrn.contract import MS_ROLE_ENV


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
    common = mask_env(common, plan.secret_names)
    head = Text()
    head.append(f"backend: {backend_label(plan.backend)}", style="bold")
    if plan.startup:
        head.append(f"\nstartup: {plan.startup}")
    for key, value in notes.items():
        head.append(f"\n{key}: {value}")
    table = Table(title="ranks", box=box.SIMPLE_HEAD, show_lines=False)
    for col in ("rank", "local_rank", "node_rank", "host", "device_id", "threads", "cores", "env (per rank)"):
        table.add_column(col, overflow="fold")
    for r in plan.ranks:
        proc = plan.worker(r.rank)
        cpus = ",".join(map(str, proc.cpus)) if proc.cpus else "-"
        shown = mask_env({k: proc.env[k] for k in varying if k in proc.env}, plan.secret_names)
        env = " ".join(f"{k}={v}" for k, v in shown.items())
        table.add_row(*cells(str(r.rank), str(r.local_rank), str(r.node_rank), r.host, str(r.device_id),
                      str(proc.threads), cpus, env))
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
        extra = " ".join(f"{k}={sched.env[k]}" for k in (MS_ROLE_ENV,)) if sched else "(not started)"
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
