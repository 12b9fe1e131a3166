"""The HCCL rank table (version "1.0") as data, and the one place its JSON is written.

The format, as MindSpore's and ModelZoo's ``hccl_tools.py`` write it (every value a string)::

    {"version": "1.0", "server_count": "1",
     "server_list": [{"server_id": "10.0.0.1",
                      "device": [{"device_id": "0", "device_ip": "192.98.92.100", "rank_id": "0"}],
                      "host_nic_ip": "reserve"}],
     "status": "completed"}

Each device's ``device_ip`` is the address of its RoCE NIC (see ``cluster.ranktable.hccn``);
``server_id`` is the server's own (host) IP. ``build_rank_table`` turns servers into that
dict and ``rank_table_text`` into the file's text; ``RankTable`` is a complete table with
its numbering checked. Reading and validating a file is ``cluster.ranktable.check``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cluster.devices import format_ids
from cluster.errors import PlanError

RANK_TABLE_VERSION = "1.0"
#: Stands in for a device IP that is not known (dry runs only); never valid for HCCL.
PLACEHOLDER_IP = "0.0.0.0"

_UINT = re.compile(r"^\d+$")


@dataclass(frozen=True)
class TableDevice:
    """One device of one server in the rank table."""

    device_id: int
    device_ip: str
    rank_id: int

    def __post_init__(self) -> None:
        if self.device_id < 0 or self.rank_id < 0:
            raise PlanError(f"rank table: device_id and rank_id must be >= 0, got {self}")
        _check_ip(self.device_ip, f"device_ip of device {self.device_id}")


@dataclass(frozen=True)
class TableServer:
    """One server (host) of the rank table: its IP and its devices in rank order."""

    server_id: str
    devices: tuple[TableDevice, ...]

    def __post_init__(self) -> None:
        _check_ip(self.server_id, "server_id")
        if not self.devices:
            raise PlanError(f"rank table: server {self.server_id} has no devices")
        ids = [d.device_id for d in self.devices]
        if len(set(ids)) != len(ids):
            raise PlanError(f"rank table: server {self.server_id} lists a device twice: {ids}")

    @property
    def device_ids(self) -> tuple[int, ...]:
        """Device ids in the order listed."""
        return tuple(d.device_id for d in self.devices)

    @property
    def ranks(self) -> tuple[int, ...]:
        """Rank ids in the order listed."""
        return tuple(d.rank_id for d in self.devices)


@dataclass(frozen=True)
class RankTable:
    """A complete, valid rank table: servers in file order, each with its devices in rank order.

    Construction checks the rules on numbering and addresses (servers listed once, no
    loopback server id beside other servers, ranks exactly 0..N-1, one contiguous block per
    server); a table read from a file has been through ``check_table`` first, which says
    more. ``source`` names the file it came from, for messages.
    """

    servers: tuple[TableServer, ...]
    source: str | None = None

    def __post_init__(self) -> None:
        servers = tuple(TableServer(s.server_id, tuple(sorted(s.devices, key=lambda d: d.rank_id)))
                        for s in self.servers)
        object.__setattr__(self, "servers", servers)
        _check_servers(servers, f"rank table {self.source}" if self.source else "rank table",
                       loopback_ok=False)

    @property
    def world_size(self) -> int:
        """Total number of ranks (devices) in the table."""
        return sum(len(s.devices) for s in self.servers)

    def first_rank(self, index: int) -> int:
        """The lowest rank of server ``index``."""
        return self.servers[index].ranks[0]

    def node_rank(self, index: int) -> int:
        """Position of server ``index`` when the servers are ordered by their first rank."""
        order = sorted(range(len(self.servers)), key=self.first_rank)
        return order.index(index)

    def index_of(self, server_id: str) -> int | None:
        """Index of the server with ``server_id``, or None."""
        for i, s in enumerate(self.servers):
            if s.server_id == server_id:
                return i
        return None

    def to_dict(self) -> dict[str, Any]:
        """The table in the hccl_tools format: every value a string."""
        return build_rank_table(self.servers)

    def text(self) -> str:
        """The JSON text of ``to_dict()`` (one device per line)."""
        return rank_table_text(self.to_dict())

    def describe(self) -> str:
        """One line per server: ``10.0.0.1: ranks 0-7 on devices 0-7``."""
        lines = []
        for s in self.servers:
            lo, hi = s.ranks[0], s.ranks[-1]
            lines.append(f"{s.server_id}: rank{'s' if hi > lo else ''} "
                         f"{lo}{f'-{hi}' if hi > lo else ''} on device(s) {format_ids(s.device_ids)}")
        return "\n".join(lines)


def build_rank_table(servers: Sequence[TableServer]) -> dict[str, Any]:
    """The rank table dict (all values strings) for ``servers``, in the order given.

    The one place the table's JSON is made: ``RankTable.to_dict``, the plan of a one-host
    Ascend launch and the merged table of a multi-host launch all come here. Checks the
    numbering first: servers listed once, ranks exactly 0..N-1, each server's ranks one
    contiguous, increasing block. Loopback server ids are allowed (a launch whose hosts are
    all this machine uses them; ``RankTable`` refuses them beside other servers).
    """
    _check_servers(servers, "rank table", loopback_ok=True)
    return {
        "version": RANK_TABLE_VERSION,
        "server_count": str(len(servers)),
        "server_list": [
            {
                "server_id": s.server_id,
                "device": [{"device_id": str(d.device_id), "device_ip": d.device_ip,
                            "rank_id": str(d.rank_id)} for d in s.devices],
                "host_nic_ip": "reserve",
            }
            for s in servers
        ],
        "status": "completed",
    }


def rank_table_text(table: Mapping[str, Any]) -> str:
    """The rank table as the JSON text written to ``rank_table.json`` (one device per line)."""
    text = json.dumps(table, indent=4)
    # Collapse each device object onto one line: same JSON, a table one can read.
    return re.sub(r"\{\s+(\"device_id\"[^{}]*?)\s+\}",
                  lambda m: "{" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "}", text) + "\n"


def _check_servers(servers: Sequence[TableServer], where: str, loopback_ok: bool) -> None:
    """Raise ``PlanError`` (``where`` names the table) unless ``servers`` are some, each listed
    once, numbered 0..N-1 in one contiguous block per server, and (unless ``loopback_ok``)
    free of loopback server ids when there are several."""
    if not servers:
        raise PlanError(f"{where}: no servers")
    ids = [s.server_id for s in servers]
    if len(set(ids)) != len(ids):
        raise PlanError(f"{where}: a server is listed twice: {ids}")
    if len(servers) > 1 and not loopback_ok:
        loop = [s for s in ids if is_loopback(s)]
        if loop:
            raise PlanError(f"{where}: server_id {loop[0]} is a loopback address, which other "
                            f"servers cannot reach; use each server's real IP")
    ranks = sorted(r for s in servers for r in s.ranks)
    if ranks != list(range(len(ranks))):
        raise PlanError(f"{where}: ranks must be exactly 0..{len(ranks) - 1}, each once")
    for s in servers:
        if list(s.ranks) != list(range(s.ranks[0], s.ranks[0] + len(s.ranks))):
            raise PlanError(f"{where}: server {s.server_id} has ranks {list(s.ranks)}, which "
                            f"are not one contiguous block (HCCL refuses interleaved servers)")


def _check_ip(value: str, what: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise PlanError(f"rank table: {what} {value!r} is not an IP address") from None


def is_ip(value: Any) -> bool:
    """True for a string holding an IPv4 or IPv6 address."""
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_loopback(value: str) -> bool:
    """True for a loopback address (127.x, ::1), which other servers can never reach."""
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return False


def as_uint(value: Any) -> int | None:
    """A non-negative integer given as a string of digits or an int; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and _UINT.match(value):
        return int(value)
    return None
