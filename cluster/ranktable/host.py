"""This host in a rank table: its own IP addresses, and which of the table's servers it is.

Looks at this host's network interfaces and routes (nothing is sent); ``find_local_server``
itself is pure over the addresses it is given.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping

from cluster.errors import PlanError
from cluster.ranktable.hccn import DEFAULT_HCCN_CONF
from cluster.ranktable.table import RankTable, is_ip, is_loopback


def _iface_ipv4(name: str) -> str | None:
    import fcntl
    import struct

    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), siocgifaddr, struct.pack("256s", name[:15].encode()))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def local_ips() -> list[str]:
    """This host's IPv4 addresses: every interface's (Linux), the host name's, the routed one."""
    found: list[str] = []
    try:
        for _, name in socket.if_nameindex():
            ip = _iface_ipv4(name)
            if ip:
                found.append(ip)
    except (OSError, ImportError):
        pass
    try:
        found += socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # no packet is sent; this only picks a route
            found.append(sock.getsockname()[0])
    except OSError:
        pass
    return list(dict.fromkeys(ip for ip in found if is_ip(ip)))


def primary_ip() -> str:
    """This host's main IPv4 address (the one its default route uses), else the host name's,
    else ``127.0.0.1``: the default ``server_id`` of a generated table."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # no packet is sent; this only picks a route
            return sock.getsockname()[0]
    except OSError:
        pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def find_local_server(table: RankTable, *, server_ip: str | None = None,
                      host_ips: Iterable[str] = (), hccn_ips: Mapping[int, str] | None = None,
                      hccn_source: str = DEFAULT_HCCN_CONF) -> int:
    """Index of this host's server in ``table``.

    ``server_ip`` (the ``--server-ip`` flag) decides when given. Otherwise the server whose
    ``server_id`` is one of ``host_ips`` (a lone loopback server counts as this host); failing
    that, the server one of whose ``device_ip`` values is in this host's hccn.conf
    (``hccn_ips``). No match, or several, is an error saying how to choose.
    """
    name = table.source or "the rank table"
    listed = ", ".join(s.server_id for s in table.servers)
    if server_ip is not None:
        index = table.index_of(server_ip)
        if index is None:
            raise PlanError(f"--server-ip {server_ip}: {name} has no server with that server_id "
                            f"(it lists {listed}); pass one of those")
        return index
    host_ips = list(host_ips)
    hits = [i for i, s in enumerate(table.servers) if s.server_id in host_ips]
    if not hits and len(table.servers) == 1 and is_loopback(table.servers[0].server_id):
        hits = [0]
    if len(hits) > 1:
        raise PlanError(f"{name}: this host has the addresses of several servers "
                        f"({', '.join(table.servers[i].server_id for i in hits)}); pass "
                        f"--server-ip IP to say which one this host is")
    if hits:
        return hits[0]
    mine = set((hccn_ips or {}).values())
    hits = [i for i, s in enumerate(table.servers) if mine & {d.device_ip for d in s.devices}]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise PlanError(f"{name}: device IPs of {hccn_source} appear on several servers "
                        f"({', '.join(table.servers[i].server_id for i in hits)}); pass "
                        f"--server-ip IP to say which one this host is")
    raise PlanError(f"{name}: this host is none of its servers ({listed}): its addresses "
                    f"({', '.join(host_ips) or 'none found'}) are no server_id, and no device_ip "
                    f"matches {hccn_source}; run on one of those servers, or pass --server-ip IP "
                    f"to say which server this host is")
