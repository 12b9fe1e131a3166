"""Reading a rank table file and reporting every problem it has, with where and how to fix it.

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
when reading and written back as strings. Pure functions over parsed JSON, except
``load_table_json`` and ``read_table``, which read the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.devices import format_ids
from cluster.errors import PlanError
from cluster.ranktable.table import (
    PLACEHOLDER_IP,
    RANK_TABLE_VERSION,
    RankTable,
    TableDevice,
    TableServer,
    as_uint,
    is_ip,
    is_loopback,
)


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
        n = as_uint(count)
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
        elif not is_ip(sid):
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
            n = as_uint(did)
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
            elif not is_ip(ip) or ip == PLACEHOLDER_IP:
                add(f"{dp}.device_ip", f"{_shown(ip)} is not a usable IP address",
                    "use the device's NIC IP (address_<n> in /etc/hccn.conf, or "
                    "hccn_tool -i <n> -ip -g)")
            elif ip in first_ip:
                add(f"{dp}.device_ip", f"{ip} is used twice (also {first_ip[ip]})",
                    "each device has its own NIC IP; check /etc/hccn.conf on that server")
            else:
                first_ip[ip] = f"{dp}.device_ip"
            rid = dev.get("rank_id")
            r = as_uint(rid)
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
            add(path, f"server_list[{server}] holds ranks {format_ids(values)}, not one contiguous "
                f"block (HCCL refuses servers whose ranks interleave)", renumber)


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
            r = as_uint(dev.get("rank_id")) if check_ranks else rank
            devices.append(TableDevice(as_uint(dev["device_id"]), dev["device_ip"], r))
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
