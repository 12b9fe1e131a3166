"""HCCL rank tables (version "1.0") for Ascend launches, built from the plan's ranks.

The format, as MindSpore's and ModelZoo's ``hccl_tools.py`` write it (every value a string)::

    {"version": "1.0", "server_count": "1",
     "server_list": [{"server_id": "10.0.0.1",
                      "device": [{"device_id": "0", "device_ip": "192.98.92.100", "rank_id": "0"}],
                      "host_nic_ip": "reserve"}],
     "status": "completed"}

Each device's ``device_ip`` is the address of its RoCE NIC, listed in ``/etc/hccn.conf`` as
``address_<device_id>=<ip>`` lines. Ranks are unique, numbered 0..N-1, and contiguous per
server (HCCL refuses interleaved servers). Reading hccn.conf is the only I/O here.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from cluster.errors import PlanError

RANK_TABLE_VERSION = "1.0"
DEFAULT_HCCN_CONF = "/etc/hccn.conf"
#: Stands in for a device IP that is not known (dry runs only); never valid for HCCL.
PLACEHOLDER_IP = "0.0.0.0"

_ADDRESS = re.compile(r"^\s*address_(\d+)\s*=\s*(\S+)\s*$")


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


def _check_ip(value: str, what: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise PlanError(f"rank table: {what} {value!r} is not an IP address") from None


def parse_hccn_conf(text: str, source: str = DEFAULT_HCCN_CONF) -> dict[int, str]:
    """Map device id -> device IP from the ``address_<n>=<ip>`` lines of an hccn.conf text.

    Other lines (netmask_<n>, comments, blank lines) are ignored; a malformed address is an error
    that names the file and line.
    """
    ips: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _ADDRESS.match(line)
        if not match:
            continue
        device, ip = int(match.group(1)), match.group(2)
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise PlanError(f"{source} line {number}: {ip!r} is not an IP address (expected "
                            f"address_{device}=<ip>); fix the file or pass another with "
                            f"--hccn-conf") from None
        ips[device] = ip
    return ips


def read_hccn_conf(path: str | Path = DEFAULT_HCCN_CONF) -> dict[int, str] | None:
    """Device IPs from the hccn.conf at ``path``; None when the file does not exist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PlanError(f"cannot read {path}: {exc.strerror}; pass a readable file with "
                        f"--hccn-conf") from None
    return parse_hccn_conf(text, str(path))


def device_ips(device_ids: Sequence[int], conf: Mapping[int, str] | None, conf_path: str,
               allow_placeholder: bool) -> tuple[dict[int, str], list[str]]:
    """Look up each device's IP in a parsed hccn.conf; return (ips, warnings).

    A missing file or address is an error, or (``allow_placeholder``, for dry runs) a warning
    and ``PLACEHOLDER_IP``.
    """
    if conf is None:
        problem = f"{conf_path} does not exist, so the device IPs for the rank table are unknown"
        if not allow_placeholder:
            raise PlanError(f"{problem}. On an Ascend host it is written by hccn_tool; pass its "
                            f"location with --hccn-conf FILE.")
        return ({d: PLACEHOLDER_IP for d in device_ids},
                [f"{problem}; the rank table shows {PLACEHOLDER_IP} instead (dry run only)"])
    missing = [d for d in device_ids if d not in conf]
    if missing and not allow_placeholder:
        raise PlanError(f"{conf_path} has no address_<n> line for device(s) "
                        f"{', '.join(map(str, missing))}; add them (hccn_tool -i <n> -ip -g shows "
                        f"the address) or pass another file with --hccn-conf.")
    warnings = ([f"{conf_path} has no address for device(s) {', '.join(map(str, missing))}; "
                 f"the rank table shows {PLACEHOLDER_IP} instead (dry run only)"] if missing else [])
    return {d: conf.get(d, PLACEHOLDER_IP) for d in device_ids}, warnings


def build_rank_table(servers: Sequence[TableServer]) -> dict[str, Any]:
    """The rank table dict (all values strings) for ``servers``, checking the rank numbering.

    Ranks must be exactly 0..N-1, increasing within a server, and each server's ranks must
    follow the previous server's (contiguous per server).
    """
    if not servers:
        raise PlanError("rank table: no servers")
    ids = [s.server_id for s in servers]
    if len(set(ids)) != len(ids):
        raise PlanError(f"rank table: a server is listed twice: {ids}")
    ranks = [d.rank_id for s in servers for d in s.devices]
    if ranks != list(range(len(ranks))):
        raise PlanError(f"rank table: ranks must be 0..{len(ranks) - 1} in server order "
                        f"(contiguous per server), got {ranks}")
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
