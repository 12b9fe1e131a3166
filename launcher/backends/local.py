"""The local backend: this host is the launch's one node, and its node agent is a child process
of the launcher. ``--devices N|IDS`` (or this host's share of ``--rank-table``) are its devices."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cluster.devices import backend_label, format_ids, list_devices, parse_devices
from cluster.errors import PlanError
from cluster.numa import read_topology
from cluster.plan import Node
from cluster.ranktable.check import read_table
from cluster.ranktable.hccn import device_ips, read_hccn_conf
from cluster.ranktable.host import find_local_server, local_ips, primary_ip
from cluster.ranktable.table import RankTable
from launcher.backends.base import Backend, Discovery, DiscoveryRequest, module_argv, python_path
from launcher.backends.ports import PortReservation, port_is_free, reserve_port
from launcher.config import LaunchConfig, LaunchError
from launcher.rundir.record import RunRecord
from wrn.config import BUILTIN_DATA, ConfigError, TrainConfig
from wrn.contract import AGENT_PARENT_ENV
from wrn.datapath import check_data_path, count_images
from wrn.fileio import expand_user, write_atomic
from wrn.hostname import host_name

if TYPE_CHECKING:
    from launcher.session.resources import HeldResources


class LocalBackend(Backend):
    """The agent is a child process of the launcher, run with the launcher's own interpreter.

    ``sys.executable`` is used rather than whatever ``python`` is first on PATH, so the agent and
    the workers run in the environment the launcher was started from.
    """

    local = True

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    @classmethod
    def discover(cls, request: DiscoveryRequest, held: HeldResources) -> Discovery:
        """This host as the launch's one node: devices (``--devices``, or the resumed run's
        count, or this host's share of ``--rank-table``), device IPs (Ascend), the cores near
        each device (Ascend binding), the data checked, the scheduler port held."""
        config, target = request.config, request.target
        held.backend = cls()
        warnings: list[str] = []
        available = list_devices(target, config.dev_dir)
        label = backend_label(target)
        if available is not None and not available:
            node_glob = {"ascend": "/dev/davinci<N>", "gpu": "/dev/nvidia<N> or nvidia-smi -L"}[target]
            if not config.dry_run:
                raise LaunchError(f"the {label} backend was chosen ({request.how}) but this host "
                                  f"has no {label} devices (looked for {node_glob}); run on a "
                                  f"host that has them, use --backend cpu, or add --dry-run to "
                                  f"only see the plan")
            warnings.append(f"this host has no {label} devices; the plan uses the device ids as "
                            f"asked (dry run)")
            available = None
        share = _rank_table_share(config) if config.rank_table else None
        if share is not None:
            device_ids = _table_devices(*share, available, target, config.rank_table)
        else:
            devices = config.devices if config.devices is not None else \
                _resumed_devices(request.previous)
            device_ids = parse_devices(devices).resolve(available, target)
        host = host_name()
        ips: dict[str, dict[int, str]] = {}
        ranktable_startup = target == "ascend" and config.ascend_startup == "ranktable"
        if target == "ascend" and share is not None:
            server = share[0].servers[share[1]]
            ips[host] = {d.device_id: d.device_ip for d in server.devices}
        if share is not None and ranktable_startup:
            address = share[0].servers[share[1]].server_id
        elif share is not None:
            held.port, address = _table_scheduler_port(config, *share)
        else:
            address = "127.0.0.1"
            if target == "ascend" and (ranktable_startup or config.hccl_rank_table):
                conf = read_hccn_conf(config.hccn_conf)
                ips[host], ip_warnings = device_ips(device_ids, conf, config.hccn_conf, config.dry_run)
                warnings += ip_warnings
                address = primary_ip()  # the rank table's server_id
            if len(device_ids) > 1 and not ranktable_startup:  # one worker runs standalone
                held.port = reserve_port(config.port, config.port_range)
        cpus = _usable_cpus()
        notes = {"devices": f"{format_ids(device_ids)} ({len(device_ids)} worker(s))",
                 "cores": f"{len(cpus)} usable"}
        if share is not None:
            table, index = share
            first = table.first_rank(index)
            notes["rank table"] = (f"{config.rank_table}: this host is server "
                                   f"{table.servers[index].server_id} ({index + 1} of "
                                   f"{len(table.servers)}), ranks {first}-"
                                   f"{first + len(device_ids) - 1} of {table.world_size}")
        node = Node(host, address, tuple(device_ids), cpus)
        _check_data(request.train, config.dry_run, warnings, len(device_ids))
        device_cpus = _device_cpus(config, target, node, warnings, notes)
        return Discovery((node,), ips, share, device_cpus, notes, warnings)

    def agent_cmd(self, host: str) -> list[str]:
        return module_argv(self.python, "launcher.agent")

    def agent_env(self, host: str) -> dict[str, str]:
        """The agent's environment: the launcher's, with the project importable."""
        env = dict(os.environ)
        env["PYTHONPATH"] = python_path(env.get("PYTHONPATH"))
        if not env["PYTHONPATH"]:
            del env["PYTHONPATH"]
        env["PYTHONUNBUFFERED"] = "1"
        env[AGENT_PARENT_ENV] = str(os.getpid())  # the agent checks its launcher is alive
        return env

    def spawn_agent(self, host: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.agent_cmd(host), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=self.agent_env(host), close_fds=True,
            process_group=0)  # its own group: a terminal's Ctrl-C reaches only the launcher

    def put(self, host: str, remote_dir: str, files: Mapping[str, str]) -> None:
        os.makedirs(remote_dir, exist_ok=True)
        for name, local in files.items():
            target = os.path.join(remote_dir, name)
            if os.path.abspath(local) != os.path.abspath(target):
                shutil.copyfile(local, target)

    def get(self, host: str, remote: str, local: str) -> None:
        write_atomic(local, Path(remote).read_bytes())

    def list_dir(self, host: str, path: str) -> list[tuple[str, int, bool]]:
        out = []
        with os.scandir(path) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                out.append((entry.name, st.st_size, entry.is_file(follow_symlinks=False)))
        return out

    def same_file(self, host: str, path: str, content: str) -> bool:
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace") == content
        except OSError:
            return False

    def port_free(self, host: str, port: int) -> bool:
        return port_is_free(port)


def _usable_cpus() -> tuple[int, ...]:
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return tuple(range(os.cpu_count() or 1))


def _resumed_devices(previous: RunRecord | None) -> str:
    """A launch without --devices runs on the resumed run's device count, else on one."""
    size = previous.plan.get("world_size") if previous is not None else None
    return str(size if isinstance(size, int) and size > 0 else 1)


def _check_data(cfg: TrainConfig, dry_run: bool, warnings: list[str], world: int) -> None:
    """The data path is there and holds at least one step of images for every worker (a
    dry run only warns)."""
    try:
        check_data_path(cfg.data_path)
    except ConfigError as exc:
        if not dry_run:
            raise LaunchError(str(exc)) from None
        warnings.append(str(exc))
        return
    if cfg.data_path == BUILTIN_DATA:
        return
    train = expand_user(cfg.data_path) / "train"
    try:
        images = count_images(train.parent, enough=world * cfg.batch_size)
    except ConfigError as exc:
        raise LaunchError(str(exc)) from None
    except OSError as exc:
        raise LaunchError(f"data_path {train.parent}: cannot list {train} ({exc.strerror}); check "
                          f"its permissions") from None
    if images < world * cfg.batch_size:
        raise LaunchError(f"data_path {train.parent}: {train} has {images} images, fewer than "
                          f"{world} worker(s) x batch_size={cfg.batch_size} = "
                          f"{world * cfg.batch_size}, so not one training step fits in an epoch; "
                          f"lower batch_size (--set batch_size=N), use fewer devices or more data")


def _device_cpus(config: LaunchConfig, target: str, node: Node, warnings: list[str],
                 notes: dict[str, str]) -> dict[str, dict[int, tuple[int, ...]]]:
    """host -> device -> the CPUs near it, for binding Ascend workers (this host's topology;
    none with --no-bind-cores, or on other backends)."""
    if target != "ascend" or config.bind_cores is False:
        return {}
    try:
        topology = read_topology(config.sys_dir)
    except PlanError as exc:
        if config.bind_cores:
            raise LaunchError(f"--bind-cores: {exc}; fix that, or pass --no-bind-cores") from None
        warnings.append(f"Ascend workers are not bound to cores: {exc}")
        return {}
    if topology is None:
        how = "consecutive blocks of the usable cores" if config.bind_cores else "off"
        notes["core binding"] = (f"{how}: no device-to-NUMA topology found (npu-smi info -t "
                                 f"topo, {config.sys_dir}/bus/pci/devices)")
        return {}
    missing = [d for d in node.device_ids if d not in topology.cpus]
    notes["core binding"] = (f"each rank on its device's NUMA CPUs ({topology.source})"
                             + (f"; unknown for device(s) {format_ids(missing)}" if missing else ""))
    return {node.host: dict(topology.cpus)}


def _rank_table_share(config: LaunchConfig) -> tuple[RankTable, int]:
    """Read ``--rank-table`` (every problem reported at once) and find this host's server in
    it: ``--server-ip``, else this host's addresses, else the device IPs of its hccn.conf."""
    table = read_table(config.rank_table)
    conf = None
    if config.server_ip is None:
        try:
            conf = read_hccn_conf(config.hccn_conf)
        except PlanError:
            conf = None  # a broken hccn.conf only matters if the table's IPs do not match
    index = find_local_server(table, server_ip=config.server_ip, host_ips=local_ips(),
                              hccn_ips=conf, hccn_source=config.hccn_conf)
    return table, index


def _table_scheduler_port(config: LaunchConfig, table: RankTable,
                          index: int) -> tuple[PortReservation | None, str]:
    """CPU/GPU run of a rank table: (scheduler port, this host's address).

    One server: like ``--devices``, a free port on 127.0.0.1. Several servers: every server's
    launch must name the same ``--port``; the server holding rank 0 starts the scheduler there
    (its port is checked and held), the others only connect to it.
    """
    server = table.servers[index]
    if len(table.servers) == 1:
        port = reserve_port(config.port, config.port_range) if table.world_size > 1 else None
        return port, "127.0.0.1"
    if config.port is None:
        raise LaunchError(f"--rank-table {config.rank_table} lists {len(table.servers)} servers: "
                          f"in a dynamic cluster their workers meet at one scheduler on the "
                          f"server with rank 0, so pass the same --port P to the launch on every "
                          f"server (or --ascend-startup ranktable on Ascend)")
    if table.first_rank(index) == 0:
        return reserve_port(config.port, config.port_range), server.server_id
    return PortReservation(config.port), server.server_id  # the scheduler is elsewhere: hold nothing


def _table_devices(table: RankTable, index: int, available: list[int] | None, backend: str,
                   source: str) -> tuple[int, ...]:
    """This server's device ids from the table, checked against the devices this host has."""
    server = table.servers[index]
    if available is not None:
        missing = [d for d in server.device_ids if d not in available]
        if missing:
            label = backend_label(backend)
            raise LaunchError(f"rank table {source}: server {server.server_id} lists {label} "
                              f"device(s) {format_ids(missing)}, but this host has "
                              f"{format_ids(available) or 'none'}; fix the table (wrn-launch "
                              f"ranktable --devices ... writes one for this host) or run on the "
                              f"server it describes")
    return server.device_ids
