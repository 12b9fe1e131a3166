"""The SSH backend: agents on other hosts (``--hostfile`` / ``--hosts``), each in a channel of a
verified SSH connection (``launcher.backends.sshclient``), files over SFTP or exec channels
(``launcher.backends.remotefiles``).

``SSHBackend.discover`` turns the host list into complete plan nodes (each host's address,
devices, cores, python, project path and run-directory path) after a parallel pre-flight
(``launcher.backends.preflight``) and keeps the verified connections for the whole run; on
Ascend it reads every host's hccn.conf for one merged rank table.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import paramiko

from cluster.errors import PlanError
from cluster.hosts import HostSpec
from cluster.plan import Node
from cluster.ranktable.build import merged_rank_table
from cluster.ranktable.hccn import parse_hccn_conf
from launcher.backends.base import Backend, BackendError, Discovery, DiscoveryRequest, module_argv, source_root
from launcher.backends.ports import reserve_port
from launcher.backends.preflight import print_table, raise_if_failed, recheck_hosts, run_preflight
from launcher.backends.remotefiles import ExecFiles, SFTPFiles
from launcher.backends.sshclient import (
    ChannelProcess,
    RemoteHost,
    SSHError,
    agent_command,
    connect,
    python_command,
    resolve_target,
    run_command,
)
from launcher.config import SSHSettings
from launcher.installation import versions

if TYPE_CHECKING:
    from launcher.session.resources import HeldResources


class SSHBackend(Backend):
    """Agents on other hosts, each in a channel of a verified SSH connection.

    The connections (one per host, opened by the pre-flight) live as long as the run: every
    attempt's agents are channels of the same connections. One found dead when an agent is
    spawned is re-made once (same target, same host-key checks); if that fails, the spawn raises
    ``BackendError`` naming the host and the cause.
    """

    local = False

    def __init__(self, hosts: dict[str, RemoteHost], clients: dict[str, paramiko.SSHClient],
                 settings: SSHSettings | None = None, sftp: Mapping[str, bool] | None = None) -> None:
        self.hosts = hosts
        self.clients = clients
        self.sftp = dict(sftp or {})  # host -> whether its sshd serves SFTP (default: yes)
        self.settings = settings or SSHSettings()
        self._procs: list[ChannelProcess] = []
        self._lock = threading.Lock()

    @classmethod
    def discover(cls, request: DiscoveryRequest, held: HeldResources) -> Discovery:
        """The hosts of ``--hostfile``/``--hosts`` (or the resumed run's hostfile), pre-flighted
        over SSH in parallel (versions, imports, data, devices, the run directory there, the
        scheduler port on the master); Ascend: one merged rank table's device IPs from every
        host's hccn.conf."""
        config, target, specs = request.config, request.target, request.hosts
        ranktable_startup = target == "ascend" and config.ascend_startup == "ranktable"
        if sum(s.slots for s in specs) > 1 and not ranktable_startup:
            held.port = reserve_port(config.port, config.port_range)
        nodes, backend = prepare_hosts(specs, config.ssh, versions(), target, request.train.data_path,
                                       held.port_number, os.getcwd(),
                                       remote_run_dir=config.remote_run_dir, dev_dir=config.dev_dir,
                                       run_dir=str(request.run_dir), resume=config.resume is not None)
        held.backend = backend
        found = Discovery(nodes)
        if target == "ascend" and (ranktable_startup or config.hccl_rank_table):
            # every host's hccn.conf over SFTP -> one merged rank table
            confs = {n.host: read_remote_hccn(backend, n.host, config.hccn_conf) for n in nodes}
            servers, _text, table_warnings = merged_rank_table(nodes, confs, config.hccn_conf,
                                                               config.dry_run)
            found.warnings += table_warnings
            found.device_ips = {n.host: {d.device_id: d.device_ip for d in server.devices}
                                for n, server in zip(nodes, servers)}
            # the table's server ids are the hosts' resolved IPs
            found.nodes = tuple(dataclasses.replace(n, address=server.server_id)
                                for n, server in zip(nodes, servers))
        first = found.nodes[0]
        found.notes.update(hosts=", ".join(f"{n.host} ({len(n.device_ids)})" for n in found.nodes),
                           master=f"{first.host} (scheduler {first.address}:"
                                  f"{held.port_number or '-'})")
        if target == "ascend" and config.bind_cores is not False:
            found.notes["core binding"] = "off: the NUMA topology of other hosts is not read"
        return found

    def recheck(self, request: DiscoveryRequest, nodes: Sequence[Node]) -> dict[str, str]:
        """Every node's probe again, over the run's own connections."""
        checks = recheck_hosts(self, nodes, self.settings, versions(), request.target,
                               request.train.data_path, request.config.dev_dir)
        return {c.host: "; ".join(c.problems) for c in checks if not c.ok}

    def client(self, host: str) -> paramiko.SSHClient:
        """The live connection to ``host``, re-made if it was lost; ``BackendError`` if it
        cannot be."""
        with self._lock:
            client = self.clients.get(host)
            transport = client.get_transport() if client is not None else None
            if transport is not None and transport.is_active():
                return client
            if client is not None:
                client.close()
            try:
                client = connect(self.hosts[host].target, self.settings)
            except SSHError as exc:
                raise BackendError(host, f"the SSH connection to {host} was lost and cannot be "
                                         f"re-made: {exc}") from None
            self.clients[host] = client
            return client

    def agent_cmd(self, host: str) -> list[str]:
        """The agent's argv on ``host`` (run there through ``agent_command``)."""
        return module_argv(self.hosts[host].python, "launcher.agent")

    def spawn_agent(self, host: str) -> ChannelProcess:
        """Start the agent of ``host`` in a new SSH channel."""
        try:
            proc = ChannelProcess(self.client(host), agent_command(self.hosts[host]),
                                  self.settings.timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise BackendError(host, f"cannot start the node agent on {host} over SSH "
                                     f"({type(exc).__name__}: {exc})") from None
        self._procs.append(proc)
        return proc

    def files(self, host: str) -> SFTPFiles | ExecFiles:
        """File operations on ``host``: over SFTP, or exec channels where the pre-flight found
        no SFTP server there."""
        client = self.client(host)
        if self.sftp.get(host, True):
            return SFTPFiles(client)
        return ExecFiles(client, self.hosts[host].python, max(self.settings.timeout, 30.0))

    def files_via(self, host: str) -> str:
        return self.files(host).how

    def put(self, host: str, remote_dir: str, files: Mapping[str, str]) -> None:
        self._on(host, f"copy into {remote_dir}", lambda f: f.put_files(remote_dir, files))

    def get(self, host: str, remote: str, local: str) -> None:
        """Copy ``remote`` to ``local`` atomically (temporary name, then rename);
        ``FileNotFoundError`` when ``remote`` does not exist."""
        tmp = f"{local}.{os.getpid()}.part"
        try:
            self._on(host, f"copy {remote}", lambda f: f.get(remote, tmp))
            os.replace(tmp, local)
        finally:
            if os.path.exists(tmp):  # a failed copy leaves no partial file behind
                os.unlink(tmp)

    def list_dir(self, host: str, path: str) -> list[tuple[str, int, bool]]:
        return self._on(host, f"list {path}", lambda f: f.list_dir(path))

    def read_text(self, host: str, path: str) -> str:
        """The text of ``path`` on ``host``; ``FileNotFoundError`` if it is missing."""
        return self._on(host, f"read {path}", lambda f: f.read_text(path))

    def same_file(self, host: str, path: str, content: str) -> bool:
        try:
            return self.read_text(host, path) == content
        except (FileNotFoundError, BackendError):
            return False

    def _on(self, host: str, what: str, action):
        """``action(files of host)``; a missing file stays ``FileNotFoundError``, any other
        failure becomes ``BackendError`` naming the host, the operation and the cause."""
        files = self.files(host)
        try:
            return action(files)
        except FileNotFoundError:
            raise
        except (OSError, paramiko.SSHException, EOFError) as exc:
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise BackendError(host, f"cannot {what} on {host} over {files.how} ({cause})") from None

    def port_free(self, host: str, port: int) -> bool:
        """Asks the host's python whether ``port`` can be bound there (the pre-flight's test)."""
        code = f"from launcher.backends.ports import port_is_free; print(port_is_free({int(port)}))"
        command = python_command(self.hosts[host], f"-c {shlex.quote(code)}")
        try:
            status, out, err = run_command(self.client(host), command, max(self.settings.timeout, 30.0))
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            raise BackendError(host, f"cannot check port {port} on {host} ({exc})") from None
        if status != 0 or out.strip() not in ("True", "False"):
            raise BackendError(host, f"cannot check port {port} on {host} (exit {status}: "
                                     f"{(err or out).strip()[-200:]})")
        return out.strip() == "True"

    def forget(self, host: str) -> None:
        """Leave ``host`` out from now on (a restart dropped it): its connection is closed."""
        with self._lock:
            self.hosts.pop(host, None)
            client = self.clients.pop(host, None)
        if client is not None:
            client.close()

    def stop_agents(self, agents: Collection[Any] | None = None) -> None:
        """Close the agent channels of ``agents`` (None: every one; remote agents then stop
        their workers)."""
        stopping = [p for p in self._procs if agents is None or p in agents]
        self._procs = [p for p in self._procs if p not in stopping]
        for proc in stopping:
            proc.kill()

    def close(self) -> None:
        """``stop_agents`` and drop the SSH connections (the run is over)."""
        self.stop_agents()
        for client in self.clients.values():
            client.close()


def remote_hosts(specs: Sequence[HostSpec], settings: SSHSettings, cwd: str,
                 run_dir: str | None = None) -> dict[str, RemoteHost]:
    """Each host's SSH target (after ~/.ssh/config), python, project path and launch dir;
    ``run_dir`` is the run directory's path on the hosts (None: the same path as here). The
    project path is ``workdir=``, else this launcher's source folder; None when this launcher is
    installed (each host's python then imports its own installed wrn-launch)."""
    return {s.name: RemoteHost(s.name, resolve_target(s.name, settings, s.user, s.port),
                               s.python or sys.executable, s.workdir or source_root(), cwd, run_dir)
            for s in specs}


def host_device_ids(spec: HostSpec) -> tuple[int, ...]:
    """The device ids a host runs: its ``devices=``, else ``0..slots-1``."""
    return spec.devices if spec.devices is not None else tuple(range(spec.slots))


def prepare_hosts(specs: Sequence[HostSpec], settings: SSHSettings, want: Mapping[str, str | None],
                  backend: str, data_path: str, port: int | None, cwd: str,
                  table_stream: TextIO | None = None,
                  remote_run_dir: str | None = None, dev_dir: str = "/dev",
                  run_dir: str | None = None, resume: bool = False) -> tuple[tuple[Node, ...], SSHBackend]:
    """Pre-flight every host in parallel and build the plan nodes; ``PlanError`` if any fails
    (every connection is closed then, and nothing was started anywhere). The run directory's
    path on each host (``remote_run_dir``, else ``run_dir``, the local one) is checked there."""
    hosts = remote_hosts(specs, settings, cwd, remote_run_dir)
    devices = {s.name: (None if backend == "cpu" else host_device_ids(s)) for s in specs}
    checked = [dataclasses.replace(h, run_dir=h.run_dir or run_dir) for h in hosts.values()]
    checks, clients = run_preflight(checked, settings, want, backend, data_path, devices, port,
                                    dev_dir, resume)
    print_table(checks, table_stream or sys.stderr)
    try:
        raise_if_failed(checks)
    except PlanError:
        for client in clients.values():
            client.close()
        raise
    by_name = {c.host: c for c in checks}
    nodes = tuple(Node(s.name, hosts[s.name].target.hostname, host_device_ids(s),
                       tuple(by_name[s.name].cpus), python=hosts[s.name].python,
                       pythonpath=hosts[s.name].workdir, run_dir=hosts[s.name].run_dir)
                  for s in specs)
    sftp = {c.host: c.sftp for c in checks}
    return nodes, SSHBackend(hosts, clients, settings, sftp)


def read_remote_hccn(backend: SSHBackend, host: str, path: str) -> dict[int, str] | None:
    """Parse ``path`` (an hccn.conf) on ``host``: device id -> IP; None if missing."""
    try:
        text = backend.read_text(host, path)
    except FileNotFoundError:
        return None
    except BackendError as exc:
        raise PlanError(f"{host}:{path}: cannot read the hccn.conf ({exc}); check --hccn-conf "
                        f"and the file's permissions there") from None
    return parse_hccn_conf(text, f"{host}:{path}")
