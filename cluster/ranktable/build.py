"""Making new rank tables: for this host's devices, merged from several tables, and merged
for a launch over several hosts; the file names hccl_tools.py and merge_hccl.py give them.

``merge_tables`` joins several servers' tables in the order given and renumbers the ranks,
which also repairs any rank numbering. ``merged_rank_table`` builds a multi-host launch's
table from each host's hccn.conf; it is pure but for resolving host names to IPs.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence

from cluster.errors import PlanError
from cluster.plan import Node
from cluster.ranktable.hccn import device_ips
from cluster.ranktable.table import (
    RankTable,
    TableDevice,
    TableServer,
    build_rank_table,
    is_ip,
    is_loopback,
    rank_table_text,
)


def generate_table(device_ids: Sequence[int], ips: Mapping[int, str], server_ip: str) -> RankTable:
    """A one-server table: ``device_ids`` in the order given get ranks 0..N-1.

    ``server_ip`` must be an IP address; every device needs an entry in ``ips``.
    """
    if not is_ip(server_ip):
        raise PlanError(f"--server-ip {server_ip!r} is not an IP address; give this host's IP, "
                        f"e.g. --server-ip 10.0.0.1")
    if not device_ids:
        raise PlanError("--devices names no device")
    missing = [d for d in device_ids if d not in ips]
    if missing:
        raise PlanError(f"no device IP for device(s) {', '.join(map(str, missing))}")
    devices = tuple(TableDevice(d, ips[d], rank) for rank, d in enumerate(device_ids))
    return RankTable((TableServer(server_ip, devices),))


def default_table_name(device_ids: Sequence[int], server_ip: str) -> str:
    """The file name hccl_tools.py gives a table: ``hccl_8p_01234567_10.0.0.1.json``."""
    return f"hccl_{len(device_ids)}p_{''.join(map(str, device_ids))}_{server_ip}.json"


def default_merged_name(table: RankTable) -> str:
    """The file name merge_hccl.py gives a merged table: ``hccl_2s_16p.json``."""
    return f"hccl_{len(table.servers)}s_{table.world_size}p.json"


def merge_tables(tables: Sequence[RankTable]) -> RankTable:
    """One table holding the servers of ``tables`` in the order given, ranks renumbered 0..N-1.

    A server listed in two inputs, or a loopback server id in a multi-server result, is an
    error naming the input files.
    """
    if not tables:
        raise PlanError("ranktable merge: give at least one table")
    seen: dict[str, str] = {}
    owner: dict[str, str] = {}
    servers: list[TableServer] = []
    rank = 0
    for table in tables:
        name = table.source or "a table"
        for server in table.servers:
            if server.server_id in seen:
                raise PlanError(f"ranktable merge: server {server.server_id} is in both "
                                f"{seen[server.server_id]} and {name}; give each server's table once")
            seen[server.server_id] = name
            devices = []
            for d in server.devices:
                here = f"device {d.device_id} of server {server.server_id} ({name})"
                if d.device_ip in owner:
                    raise PlanError(f"ranktable merge: device IP {d.device_ip} belongs to both "
                                    f"{owner[d.device_ip]} and {here}; every device needs its own "
                                    f"NIC IP (check /etc/hccn.conf on those servers)")
                owner[d.device_ip] = here
                devices.append(TableDevice(d.device_id, d.device_ip, rank))
                rank += 1
            servers.append(TableServer(server.server_id, tuple(devices)))
    if len(servers) > 1:
        for server in servers:
            if is_loopback(server.server_id):
                raise PlanError(f"ranktable merge: {seen[server.server_id]} has server_id "
                                f"{server.server_id}, a loopback address the other servers cannot "
                                f"reach; regenerate it on that server with --server-ip <its real IP>")
    return RankTable(tuple(servers))


def server_address(node: Node) -> str:
    """The IP a node is reached on (its address resolved here), for the rank table."""
    try:
        return socket.gethostbyname(node.address)
    except OSError:
        raise PlanError(f"host {node.host}: cannot resolve {node.address} to an IP address for "
                        f"the rank table; use its IP in the hostfile") from None


def merged_rank_table(nodes: Sequence[Node], confs: Mapping[str, dict[int, str] | None],
                      hccn_path: str, dry_run: bool) -> tuple[list[TableServer], str, list[str]]:
    """One rank table for every host (ranks contiguous per host, in host order) from each
    host's hccn.conf (``confs``: host -> parsed file); (servers, the table's text, warnings).

    Missing files or addresses are errors, or warnings with placeholders in a dry run. Some
    but not all hosts on loopback addresses is an error (the others cannot reach them); all on
    loopback (every host is this machine) is a warning.
    """
    servers: list[TableServer] = []
    warnings: list[str] = []
    owner: dict[str, str] = {}
    rank = 0
    for node in nodes:
        where = f"{node.host}:{hccn_path}"
        ips, found = device_ips(node.device_ids, confs.get(node.host), where, dry_run)
        warnings += found
        devices = []
        for device in node.device_ids:
            ip = ips[device]
            if ip in owner and not found:
                raise PlanError(f"device IP {ip} is in both {owner[ip]} and {where} (device "
                                f"{device}); every device needs its own NIC IP, fix hccn.conf there")
            owner[ip] = f"{where} (device {device})"
            devices.append(TableDevice(device, ip, rank))
            rank += 1
        servers.append(TableServer(server_address(node), tuple(devices)))
    loopback = [n.host for n in nodes if is_loopback(server_address(n))]
    if loopback and len(nodes) > 1:
        problem = (f"host(s) {', '.join(loopback)} have a loopback address, which other "
                   f"machines cannot reach; list the hosts by their real IPs")
        if len(loopback) < len(nodes) and not dry_run:
            raise PlanError(problem)
        warnings.append(problem + (" (dry run: shown anyway)" if dry_run else
                                   " (every host is this machine, so the table is used as is)"))
    return servers, rank_table_text(build_rank_table(servers)), warnings
