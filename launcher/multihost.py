"""Preparing a launch over several hosts (``--hostfile`` / ``--hosts``), before anything starts.

``prepare_hosts`` turns the host list into plan nodes after a parallel pre-flight
(``launcher.preflight``) and returns the ``SSHTransport`` holding the verified connections;
``adjust_plan`` gives each host's processes that host's python and project path;
``share_run_dir`` makes the run directory's inputs (config.yaml, rank table) visible on every
host: directly when the path is shared (same marker file seen there), else copied over SFTP.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

from cluster.errors import PlanError
from cluster.hosts import HostSpec, mask_env
from cluster.plan import CONFIG_NAME, RANK_TABLE_NAME, LaunchPlan, Node
from launcher.preflight import HostCheck, print_table, raise_if_failed, run_preflight
from launcher.ssh import RemoteHost, SSHSettings, SSHTransport, resolve_target, sftp_put_files, \
    sftp_same_file
from launcher.transport import PROJECT_ROOT

#: Written into a new run directory; seen with the same content on a host = shared path.
MARKER_NAME = ".wrn-run-marker"


@dataclass
class HostsPrepared:
    """The outcome of ``prepare_hosts``: nodes for the plan, the transport, the checks."""

    nodes: tuple[Node, ...]
    transport: SSHTransport
    checks: list[HostCheck]
    hosts: dict[str, RemoteHost]


def remote_hosts(specs: Sequence[HostSpec], settings: SSHSettings, cwd: str) -> dict[str, RemoteHost]:
    """Each host's SSH target (after ~/.ssh/config), python, project path and launch dir."""
    return {s.name: RemoteHost(s.name, resolve_target(s.name, settings, s.user, s.port),
                               s.python or sys.executable, s.workdir or PROJECT_ROOT, cwd)
            for s in specs}


def host_device_ids(spec: HostSpec) -> tuple[int, ...]:
    """The device ids a host runs: its ``devices=``, else ``0..slots-1``."""
    return spec.devices if spec.devices is not None else tuple(range(spec.slots))


def prepare_hosts(specs: Sequence[HostSpec], settings: SSHSettings, want: Mapping[str, str | None],
                  backend: str, data_path: str, port: int | None, cwd: str,
                  table_stream: TextIO | None = None) -> HostsPrepared:
    """Pre-flight every host in parallel and build the plan nodes; ``PlanError`` if any fails
    (every connection is closed then, and nothing was started anywhere)."""
    hosts = remote_hosts(specs, settings, cwd)
    devices = {s.name: (None if backend == "cpu" else host_device_ids(s)) for s in specs}
    checks, clients = run_preflight(list(hosts.values()), settings, want, backend, data_path,
                                    devices, port)
    print_table(checks, table_stream or sys.stderr)
    try:
        raise_if_failed(checks)
    except PlanError:
        for client in clients.values():
            client.close()
        raise
    by_name = {c.host: c for c in checks}
    nodes = tuple(Node(s.name, hosts[s.name].target.hostname, host_device_ids(s),
                       tuple(by_name[s.name].cpus)) for s in specs)
    return HostsPrepared(nodes, SSHTransport(hosts, clients, settings.timeout), checks, hosts)


def adjust_plan(plan: LaunchPlan, hosts: Mapping[str, RemoteHost]) -> LaunchPlan:
    """Give each remote process its host's python (for ``sys.executable`` commands) and
    ``PYTHONPATH`` (its project path)."""
    procs = []
    for proc in plan.processes:
        host = hosts.get(proc.host)
        if host is None:
            procs.append(proc)
            continue
        argv = list(proc.argv)
        if argv and argv[0] == sys.executable:
            argv[0] = host.python
        env = {**proc.env, "PYTHONPATH": host.workdir}
        procs.append(dataclasses.replace(proc, argv=tuple(argv), env=env))
    return dataclasses.replace(plan, processes=tuple(procs))


def share_run_dir(run_dir: Path, transport: SSHTransport) -> dict[str, str]:
    """Make config.yaml (and the rank table) reachable on every host; host -> "shared"/"copied".

    A marker with a random token is written into the run directory; a host that sees the same
    file at the same path shares it. Other hosts get the directory created and the inputs
    copied over SFTP.
    """
    token = secrets.token_hex(16)
    marker = run_dir / MARKER_NAME
    marker.write_text(token, encoding="utf-8")
    files = {name: str(run_dir / name) for name in (CONFIG_NAME, RANK_TABLE_NAME, MARKER_NAME)
             if (run_dir / name).exists()}
    how = {}
    for name, client in transport.clients.items():
        if sftp_same_file(client, str(marker), token):
            how[name] = "shared"
        else:
            sftp_put_files(client, str(run_dir), files)
            how[name] = "copied"
    return how


def masked_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """``plan.to_dict()`` with secret-looking environment values masked (for run.json)."""
    out = dict(plan)
    out["processes"] = [{**p, "env": mask_env(p.get("env") or {})} for p in plan.get("processes", [])]
    return out
