"""HCCL rank tables (version "1.0"): generate, merge, read, validate, and find this host in one.

The format, as MindSpore's and ModelZoo's ``hccl_tools.py`` write it (every value a string)::

    {"version": "1.0", "server_count": "1",
     "server_list": [{"server_id": "10.0.0.1",
                      "device": [{"device_id": "0", "device_ip": "192.98.92.100", "rank_id": "0"}],
                      "host_nic_ip": "reserve"}],
     "status": "completed"}

Each device's ``device_ip`` is the address of its RoCE NIC: an ``address_<device_id>=<ip>`` line
of ``/etc/hccn.conf``, or the ``ipaddr:<ip>`` line printed by ``hccn_tool -i <n> -ip -g``.
``server_id`` is the server's own (host) IP.

Rules a table must follow (``check_table`` reports every breach, with its JSON path such as
``server_list[1].device[3].rank_id`` and how to fix it):

* ``version`` is ``"1.0"``, ``status`` is ``"completed"``, ``server_count`` equals the number of
  servers listed;
* server ids and device IPs are IP addresses, each used once; a loopback server id (127.x) is
  only allowed in a single-server table, since other servers could never reach it;
* a server lists each device id once;
* ranks are unique and exactly 0..N-1, and each server's ranks are one contiguous block (HCCL
  refuses interleaved servers).

Integer values (as some versions of ModelZoo's ``merge_hccl.py`` write ``rank_id``) are accepted
when reading and written back as strings. ``merge_tables`` joins several servers' tables in the
order given and renumbers the ranks, which also repairs any rank numbering.

Pure functions over parsed inputs, except the few marked as reading files, asking
``hccn_tool`` or looking at this host's network interfaces.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from cluster.errors import PlanError

RANK_TABLE_VERSION = "1.0"
DEFAULT_HCCN_CONF = "/etc/hccn.conf"
HCCN_TOOL = "hccn_tool"
#: Stands in for a device IP that is not known (dry runs only); never valid for HCCL.
PLACEHOLDER_IP = "0.0.0.0"

#: HCCL's timeouts: variable -> (smallest, largest, HCCL's default), in seconds.
HCCL_TIMEOUTS = {
    "HCCL_CONNECT_TIMEOUT": (120, 7200, 120),
    # Atlas A2 accepts 0 (never) .. 2^31-1; Atlas training series (910) accepts 1..17340 and
    # rounds down to a multiple of 68 (see hccl_timeout_env's warnings).
    "HCCL_EXEC_TIMEOUT": (0, 2147483647, 1836),
}
HCCL_EXEC_TIMEOUT_910_MAX = 17340

_ADDRESS = re.compile(r"^\s*address_(\d+)\s*=\s*(\S+)\s*$")
_IPADDR = re.compile(r"^\s*ipaddr\s*:\s*(\S+)\s*$", re.MULTILINE)
_UINT = re.compile(r"^\d+$")


# -------------------------------------------------------------------------------------------
# the table as data
# -------------------------------------------------------------------------------------------
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

    Construction checks the rules of the module docstring that concern numbering and
    addresses (a table read from a file has been through ``check_table`` first, which says
    more). ``source`` names the file it came from, for messages.
    """

    servers: tuple[TableServer, ...]
    source: str | None = None

    def __post_init__(self) -> None:
        servers = tuple(TableServer(s.server_id, tuple(sorted(s.devices, key=lambda d: d.rank_id)))
                        for s in self.servers)
        object.__setattr__(self, "servers", servers)
        where = f"rank table {self.source}" if self.source else "rank table"
        if not servers:
            raise PlanError(f"{where}: no servers")
        ids = [s.server_id for s in servers]
        if len(set(ids)) != len(ids):
            raise PlanError(f"{where}: a server is listed twice: {ids}")
        if len(servers) > 1:
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
        return {
            "version": RANK_TABLE_VERSION,
            "server_count": str(len(self.servers)),
            "server_list": [
                {"server_id": s.server_id,
                 "device": [{"device_id": str(d.device_id), "device_ip": d.device_ip,
                             "rank_id": str(d.rank_id)} for d in s.devices],
                 "host_nic_ip": "reserve"}
                for s in self.servers],
            "status": "completed",
        }

    def text(self) -> str:
        """The JSON text of ``to_dict()`` (one device per line)."""
        return rank_table_text(self.to_dict())

    def describe(self) -> str:
        """One line per server: ``10.0.0.1: ranks 0-7 on devices 0-7``."""
        from cluster.devices import format_ids

        lines = []
        for s in self.servers:
            lo, hi = s.ranks[0], s.ranks[-1]
            lines.append(f"{s.server_id}: rank{'s' if hi > lo else ''} "
                         f"{lo}{f'-{hi}' if hi > lo else ''} on device(s) {format_ids(s.device_ids)}")
        return "\n".join(lines)


def _check_ip(value: str, what: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise PlanError(f"rank table: {what} {value!r} is not an IP address") from None


def _is_ip(value: Any) -> bool:
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


# -------------------------------------------------------------------------------------------
# device IPs: hccn.conf and hccn_tool
# -------------------------------------------------------------------------------------------
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


def parse_hccn_tool_output(text: str) -> str | None:
    """The device IP in the output of ``hccn_tool -i <n> -ip -g`` (its ``ipaddr:<ip>`` line).

    None when there is no such line or it does not hold an IP address (the tool prints an
    error text instead when the device has no address).
    """
    match = _IPADDR.search(text)
    if match and _is_ip(match.group(1)):
        return match.group(1)
    return None


def query_hccn_tool(device_ids: Sequence[int], tool: str = HCCN_TOOL,
                    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                    timeout: float = 10.0) -> dict[int, str] | None:
    """Ask ``hccn_tool -i <n> -ip -g`` for each device's IP; None when the tool is not installed.

    Devices for which the tool fails or prints no address are left out of the result (the
    caller reports them). ``run`` is ``subprocess.run`` (replaceable in tests).
    """
    exe = shutil.which(tool)
    if exe is None:
        return None
    ips: dict[int, str] = {}
    for device in device_ids:
        try:
            out = run([exe, "-i", str(device), "-ip", "-g"], capture_output=True, text=True,
                      timeout=timeout)
        except (OSError, subprocess.SubprocessError):
            continue
        ip = parse_hccn_tool_output(out.stdout) if out.returncode == 0 else None
        if ip:
            ips[device] = ip
    return ips


def gather_device_ips(device_ids: Sequence[int], hccn_conf: str | None = None,
                      tool: str = HCCN_TOOL) -> tuple[dict[int, str], str]:
    """Device IPs for ``device_ids`` and a note saying where they came from.

    ``hccn_conf`` given: that file only. Otherwise ``hccn_tool`` when installed, and
    ``/etc/hccn.conf`` for whatever it did not answer (as ModelZoo's hccl_tools.py does).
    A device whose IP is found nowhere is an error naming the sources tried.
    """
    if hccn_conf is not None:
        conf = read_hccn_conf(hccn_conf)
        if conf is None:
            raise PlanError(f"--hccn-conf {hccn_conf}: no such file; pass the hccn.conf that "
                            f"lists address_<n>=<ip> for each device")
        ips, tried = dict(conf), [hccn_conf]
    else:
        ips, tried = {}, []
        from_tool = query_hccn_tool(device_ids, tool)
        if from_tool is not None:
            ips.update(from_tool)
            tried.append(f"{tool} -i <n> -ip -g")
        if any(d not in ips for d in device_ids):
            conf = read_hccn_conf(DEFAULT_HCCN_CONF)
            tried.append(DEFAULT_HCCN_CONF + ("" if conf is not None else " (missing)"))
            for device, ip in (conf or {}).items():
                ips.setdefault(device, ip)
    missing = [d for d in device_ids if d not in ips]
    if missing:
        from cluster.devices import format_ids

        raise PlanError(f"no IP address for device(s) {format_ids(missing)} in "
                        f"{' or '.join(tried) or 'hccn_tool or ' + DEFAULT_HCCN_CONF}; configure the "
                        f"device NICs (hccn_tool -i <n> -ip -s address <ip> netmask <mask>) or pass "
                        f"an hccn.conf with address_<n>=<ip> lines via --hccn-conf FILE")
    return {d: ips[d] for d in device_ids}, " and ".join(tried)


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


# -------------------------------------------------------------------------------------------
# building, generating, merging
# -------------------------------------------------------------------------------------------
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


def generate_table(device_ids: Sequence[int], ips: Mapping[int, str], server_ip: str) -> RankTable:
    """A one-server table: ``device_ids`` in the order given get ranks 0..N-1.

    ``server_ip`` must be an IP address; every device needs an entry in ``ips``.
    """
    if not _is_ip(server_ip):
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


# -------------------------------------------------------------------------------------------
# reading and validating
# -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One thing wrong with a rank table: where (a JSON path), what, and how to fix it."""

    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.message}; {self.fix}"


class RankTableError(PlanError):
    """A rank table that cannot be used; ``problems`` lists every reason (the message too)."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(format_problems(source, self.problems))


def format_problems(source: str, problems: Sequence[Problem]) -> str:
    """All of a table's problems as one paragraph naming the file."""
    if len(problems) == 1:
        return f"rank table {source}: {problems[0]}"
    listed = " ".join(f"({i}) {p}." for i, p in enumerate(problems, 1))
    return f"rank table {source} has {len(problems)} problems: {listed}"


def _uint(value: Any) -> int | None:
    """A non-negative integer given as a string of digits or an int; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and _UINT.match(value):
        return int(value)
    return None


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if value is not None else "nothing"


def check_table(data: Any, check_ranks: bool = True) -> tuple[list[Problem], list[str]]:
    """Every problem of a parsed rank table, and notes (harmless oddities such as integer values).

    ``check_ranks=False`` skips the rank numbering rules (for inputs of a merge, which
    renumbers). The checks are those of the module docstring; each problem names its JSON path.
    """
    problems: list[Problem] = []
    notes: list[str] = []
    add = lambda path, msg, fix: problems.append(Problem(path, msg, fix))  # noqa: E731
    if not isinstance(data, dict):
        add("", f"the top level is {type(data).__name__}, not a JSON object",
            'write {"version": "1.0", "server_count": ..., "server_list": [...], '
            '"status": "completed"} (wrn-launch ranktable generates one)')
        return problems, notes

    version = data.get("version")
    if version is None:
        add("version", "missing", 'add "version": "1.0"')
    elif str(version) != RANK_TABLE_VERSION:
        add("version", f"{_shown(version)} is not a version this launcher knows",
            f'only version "{RANK_TABLE_VERSION}" (the format of hccl_tools.py) is supported; '
            f"regenerate the table with wrn-launch ranktable")
    status = data.get("status")
    if status != "completed":
        add("status", "missing" if status is None else f"is {_shown(status)}",
            'set "status": "completed" (HCCL reads only completed tables)')

    servers = data.get("server_list")
    if not isinstance(servers, list) or not servers:
        what = "missing" if servers is None else ("empty" if servers == [] else
                                                  f"a {type(servers).__name__}, not a list")
        add("server_list", what, "list one object per server: "
            '{"server_id": "<host IP>", "device": [...], "host_nic_ip": "reserve"}')
        servers = []

    count = data.get("server_count")
    if count is None:
        add("server_count", "missing", f'add "server_count": "{len(servers)}"')
    else:
        n = _uint(count)
        if n is None:
            add("server_count", f"{_shown(count)} is not a whole number",
                f'set it to "{len(servers)}", the number of servers in server_list')
        elif n != len(servers) and servers:
            add("server_count", f"says {n} but server_list has {len(servers)} server(s)",
                f'set it to "{len(servers)}"')
        if isinstance(count, int) and not isinstance(count, bool):
            notes.append("server_count is a number, not a string as hccl_tools.py writes it; "
                         "accepted and written back as a string")

    first_server: dict[str, str] = {}
    first_ip: dict[str, str] = {}
    ranks: list[tuple[int, str, int]] = []   # (rank, path, server index)
    n_devices = 0
    int_fields: set[str] = set()
    for i, server in enumerate(servers):
        sp = f"server_list[{i}]"
        if not isinstance(server, dict):
            add(sp, f"is {type(server).__name__}, not an object",
                'write {"server_id": "<host IP>", "device": [...], "host_nic_ip": "reserve"}')
            continue
        sid = server.get("server_id")
        if sid is None:
            add(f"{sp}.server_id", "missing", "add the server's host IP as \"server_id\"")
        elif not _is_ip(sid):
            add(f"{sp}.server_id", f"{_shown(sid)} is not an IP address",
                "use the server's host IP (a host name is not accepted by HCCL)")
        else:
            if sid in first_server:
                add(f"{sp}.server_id", f"{sid} is listed twice (also {first_server[sid]})",
                    "list each server once; merge per-server tables with wrn-launch ranktable merge")
            else:
                first_server[sid] = f"{sp}.server_id"
            if len(servers) > 1 and is_loopback(sid):
                add(f"{sp}.server_id", f"{sid} is a loopback address, which the other servers "
                    f"cannot reach", "use the server's real IP (regenerate its table with "
                    "--server-ip <IP>)")
        devices = server.get("device")
        if not isinstance(devices, list) or not devices:
            what = "missing" if devices is None else ("empty" if devices == [] else
                                                      f"a {type(devices).__name__}, not a list")
            add(f"{sp}.device", what, 'list the server\'s devices as {"device_id": "0", '
                '"device_ip": "<NIC IP>", "rank_id": "<rank>"}')
            continue
        seen_ids: dict[int, str] = {}
        for j, dev in enumerate(devices):
            dp = f"{sp}.device[{j}]"
            n_devices += 1
            if not isinstance(dev, dict):
                add(dp, f"is {type(dev).__name__}, not an object",
                    'write {"device_id": "0", "device_ip": "<NIC IP>", "rank_id": "<rank>"}')
                continue
            did = dev.get("device_id")
            n = _uint(did)
            if did is None:
                add(f"{dp}.device_id", "missing", 'add the device number, e.g. "device_id": "0"')
            elif n is None:
                add(f"{dp}.device_id", f"{_shown(did)} is not a device number",
                    'use the device\'s number as a string, e.g. "device_id": "0"')
            else:
                if isinstance(did, int):
                    int_fields.add("device_id")
                if n in seen_ids:
                    add(f"{dp}.device_id", f"device {n} is listed twice on this server (also "
                        f"{seen_ids[n]})", "list each device once per server")
                else:
                    seen_ids[n] = f"{dp}.device_id"
            ip = dev.get("device_ip")
            if ip is None:
                add(f"{dp}.device_ip", "missing", "add the device's NIC IP (address_<n> in "
                    "/etc/hccn.conf, or hccn_tool -i <n> -ip -g)")
            elif not _is_ip(ip) or ip == PLACEHOLDER_IP:
                add(f"{dp}.device_ip", f"{_shown(ip)} is not a usable IP address",
                    "use the device's NIC IP (address_<n> in /etc/hccn.conf, or "
                    "hccn_tool -i <n> -ip -g)")
            elif ip in first_ip:
                add(f"{dp}.device_ip", f"{ip} is used twice (also {first_ip[ip]})",
                    "each device has its own NIC IP; check /etc/hccn.conf on that server")
            else:
                first_ip[ip] = f"{dp}.device_ip"
            rid = dev.get("rank_id")
            r = _uint(rid)
            if rid is None:
                if check_ranks:
                    add(f"{dp}.rank_id", "missing", 'add "rank_id" (ranks are 0..N-1, contiguous '
                        "per server; wrn-launch ranktable merge renumbers a table)")
            elif r is None:
                if check_ranks:
                    add(f"{dp}.rank_id", f"{_shown(rid)} is not a rank number",
                        'use a whole number such as "rank_id": "0"')
            else:
                if isinstance(rid, int):
                    int_fields.add("rank_id")
                ranks.append((r, f"{dp}.rank_id", i))
    for name in sorted(int_fields):
        notes.append(f"{name} values are numbers, not strings as hccl_tools.py writes them "
                     f"(merge_hccl.py does this); accepted and written back as strings")
    if check_ranks and ranks:
        _check_ranks(ranks, n_devices, add)
    return problems, notes


def _check_ranks(ranks: list[tuple[int, str, int]], total: int,
                 add: Callable[[str, str, str], None]) -> None:
    """Ranks unique, exactly 0..N-1 (N = ``total`` devices listed), one contiguous block per
    server. Devices without a valid rank were reported already; gaps they leave are not."""
    renumber = "renumber the ranks (wrn-launch ranktable merge FILE -o FILE does it)"
    seen: dict[int, str] = {}
    clean = True
    for rank, path, _ in ranks:
        if rank in seen:
            add(path, f"rank {rank} is used twice (also {seen[rank]})", f"give each device its "
                f"own rank; {renumber}")
            clean = False
        else:
            seen[rank] = path
    for rank, path, _ in ranks:
        if rank >= total:
            add(path, f"rank {rank} is out of range: {total} devices are listed, so ranks are "
                f"0..{total - 1}", renumber)
            clean = False
    missing = [r for r in range(total) if r not in seen]
    if missing and len(ranks) == total:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        add("server_list", f"rank(s) {shown} are missing (ranks must be 0..{total - 1})", renumber)
        clean = False
    if not clean or len(ranks) != total:
        return
    by_server: dict[int, list[tuple[int, str]]] = {}
    for rank, path, server in ranks:
        by_server.setdefault(server, []).append((rank, path))
    for server, items in by_server.items():
        values = sorted(r for r, _ in items)
        if values != list(range(values[0], values[0] + len(values))):
            gap = next(v for k, v in enumerate(values) if v != values[0] + k)
            path = next(p for r, p in items if r == gap)
            add(path, f"server_list[{server}] holds ranks {_ranges(values)}, not one contiguous "
                f"block (HCCL refuses servers whose ranks interleave)", renumber)


def _ranges(values: Sequence[int]) -> str:
    from cluster.devices import format_ids

    return format_ids(values)


def table_from_data(data: Any, source: str = "<table>", check_ranks: bool = True) -> RankTable:
    """A ``RankTable`` from parsed JSON; raises ``RankTableError`` listing every problem.

    With ``check_ranks=False`` the rank numbering is not checked and ranks are assigned in
    file order (what a merge does anyway).
    """
    problems, _ = check_table(data, check_ranks)
    if problems:
        raise RankTableError(source, problems)
    servers = []
    rank = 0
    for server in data["server_list"]:
        devices = []
        for dev in server["device"]:
            r = _uint(dev.get("rank_id")) if check_ranks else rank
            devices.append(TableDevice(_uint(dev["device_id"]), dev["device_ip"], r))
            rank += 1
        servers.append(TableServer(server["server_id"], tuple(devices)))
    return RankTable(tuple(servers), source)


def load_table_json(path: str | os.PathLike) -> Any:
    """Parse a rank table file; unreadable files and JSON syntax errors become one-line
    ``RankTableError``s with the line and column."""
    source = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RankTableError(source, [Problem("", "no such file", "give the path of a rank "
                                              "table JSON (wrn-launch ranktable writes one)")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise RankTableError(source, [Problem("", f"cannot be read ({why})",
                                              "pass a readable JSON file")]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RankTableError(source, [Problem(
            "", f"is not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})",
            "fix the JSON syntax there")]) from None


def read_table(path: str | os.PathLike, check_ranks: bool = True) -> RankTable:
    """Read and validate the rank table at ``path`` (raises ``RankTableError``)."""
    return table_from_data(load_table_json(path), os.fspath(path), check_ranks)


# -------------------------------------------------------------------------------------------
# this host in a table
# -------------------------------------------------------------------------------------------
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
    return list(dict.fromkeys(ip for ip in found if _is_ip(ip)))


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


def hccl_timeout_env(connect: int | None = None, execute: int | None = None,
                     env: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """``HCCL_CONNECT_TIMEOUT`` / ``HCCL_EXEC_TIMEOUT`` for Ascend workers, and warnings.

    Each comes from its flag (``--hccl-connect-timeout`` / ``--hccl-exec-timeout``), else from
    ``env`` (the caller's environment) when set there, else HCCL's default; all are checked
    against HCCL's ranges, so a bad value fails before anything starts.
    """
    env = os.environ if env is None else env
    out: dict[str, str] = {}
    warnings: list[str] = []
    for var, flag, value in (("HCCL_CONNECT_TIMEOUT", "--hccl-connect-timeout", connect),
                             ("HCCL_EXEC_TIMEOUT", "--hccl-exec-timeout", execute)):
        lo, hi, default = HCCL_TIMEOUTS[var]
        where = flag
        if value is None and env.get(var, "").strip():
            raw = env[var].strip()
            where = f"the environment variable {var}"
            value = _uint(raw)
            if value is None:
                raise PlanError(f"{where}={raw!r} is not a whole number of seconds; set it to a "
                                f"value in {lo}-{hi} or unset it (HCCL's default is {default})")
        if value is None:
            value = default
        if not lo <= value <= hi:
            raise PlanError(f"{where} {value}: HCCL accepts {lo}-{hi} seconds (default "
                            f"{default}); choose a value in that range")
        if var == "HCCL_EXEC_TIMEOUT" and (value == 0 or value > HCCL_EXEC_TIMEOUT_910_MAX):
            warnings.append(f"{var}={value}: only Atlas A2/A3 accept this; Atlas training series "
                            f"(910) devices need 1-{HCCL_EXEC_TIMEOUT_910_MAX}")
        out[var] = str(value)
    return out, warnings
