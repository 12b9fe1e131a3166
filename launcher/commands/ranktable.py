"""``wrn-launch ranktable``: write an HCCL rank table for devices of this host, or ``merge``
several servers' tables into one, or ``check`` one."""

from __future__ import annotations

import argparse
import sys

from launcher import PROG
from launcher.commands.common import Parser, error, write_output

HELP = "write, merge or check HCCL rank tables"
DESCRIPTION = ("Write an HCCL rank table (version 1.0) for devices of this host; subcommands: "
               "merge FILE... -o FILE, check FILE.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``wrn-launch ranktable`` and its ``check`` and ``merge``."""
    p.add_argument("--devices", default="8", metavar="N|IDS",
                   help="a count (8: devices 0-7) or device ids (0-3); default 8")
    p.add_argument("--hccn-conf", metavar="FILE", help="device IPs from this file's "
                   "address_<n>=<ip> lines (default: hccn_tool -i <n> -ip -g, else /etc/hccn.conf)")
    p.add_argument("--server-ip", metavar="IP", help="this host's IP, the table's server_id "
                   "(default: the address of the default route)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="output file (default: hccl_<n>p_<ids>_<server ip>.json, as hccl_tools.py)")
    tables = p.add_subparsers(dest="table_command", metavar="merge|check", parser_class=Parser)
    check = tables.add_parser("check", help="validate a rank table", description="Validate a rank "
                              "table (hccl_tools or merge_hccl style): every problem with its JSON "
                              "path and fix. Exit 0 valid, 2 not.")
    check.add_argument("file", help="rank table JSON")
    check.set_defaults(run=_ranktable_check)
    merge = tables.add_parser("merge", help="merge per-server rank tables", description="Merge the "
                              "rank tables of several servers into one, in the order given; ranks "
                              "are renumbered 0..N-1 server by server.")
    merge.add_argument("files", nargs="+", metavar="FILE", help="per-server rank tables, in order")
    merge.add_argument("-o", "--output", metavar="FILE",
                       help="merged table (default: hccl_<servers>s_<ranks>p.json)")
    merge.set_defaults(run=_ranktable_merge)


def _ranktable_check(args: argparse.Namespace) -> int:
    """``ranktable check FILE``: every problem of the table; exit status 0 valid, 2 not."""
    from cluster.errors import PlanError
    from cluster.ranktable.check import RankTableError, check_table, load_table_json, table_from_data
    from cluster.ranktable.table import RANK_TABLE_VERSION

    name = "ranktable check"
    try:
        data = load_table_json(args.file)
    except RankTableError as exc:
        print(f"{args.file}: {exc.problems[0]}", file=sys.stderr)
        return 2
    problems, notes = check_table(data)
    if problems:
        for problem in problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        print(f"{PROG} {name}: {args.file} has {len(problems)} problem(s)", file=sys.stderr)
        return 2
    try:
        table = table_from_data(data, args.file)
    except PlanError as exc:
        return error(name, str(exc))
    print(f"{args.file}: ok: version {RANK_TABLE_VERSION}, {len(table.servers)} server(s), "
          f"{table.world_size} rank(s)")
    print("\n".join(f"  {line}" for line in table.describe().splitlines()))
    for note in notes:
        print(f"note: {note}")
    return 0


def _ranktable_merge(args: argparse.Namespace) -> int:
    """``ranktable merge FILE... [-o FILE]``: one table of several servers' tables."""
    from cluster.errors import PlanError
    from cluster.ranktable.build import default_merged_name, merge_tables
    from cluster.ranktable.check import read_table

    tables, errors = [], []
    for path in args.files:
        try:
            tables.append(read_table(path, check_ranks=False))
        except PlanError as exc:
            errors.append(str(exc))
    try:
        if errors:
            raise PlanError(" ".join(errors))
        merged = merge_tables(tables)
    except PlanError as exc:
        return error("", str(exc))
    return _write_table("ranktable merge", merged,
                        args.output or default_merged_name(merged), f"{len(args.files)} table(s)")


def run(args: argparse.Namespace) -> int:
    """``ranktable --devices ...``: a rank table for devices of this host."""
    from cluster.devices import parse_devices
    from cluster.errors import PlanError
    from cluster.ranktable.build import default_table_name, generate_table
    from cluster.ranktable.hccn import gather_device_ips
    from cluster.ranktable.host import primary_ip
    from cluster.ranktable.table import is_loopback

    name = "ranktable"
    try:
        req = parse_devices(args.devices)
        ids = list(range(req.count)) if req.count is not None else list(req.ids)
        server_ip = args.server_ip or primary_ip()
        ips, source = gather_device_ips(ids, args.hccn_conf)
        table = generate_table(ids, ips, server_ip)
    except PlanError as exc:
        return error(name, str(exc))
    if is_loopback(server_ip):
        print(f"warning: server_id {server_ip} is a loopback address: fine for this host alone, "
              f"but a merge with other servers refuses it; pass --server-ip <this host's IP>")
    return _write_table(name, table, args.output or default_table_name(ids, server_ip),
                        f"device IPs from {source}")


def _write_table(name: str, table, output: str, origin: str) -> int:
    path = write_output(name, output, table.text())
    if path is None:
        return 2
    print(f"wrote {path}: {len(table.servers)} server(s), {table.world_size} rank(s) ({origin})")
    print("\n".join(f"  {line}" for line in table.describe().splitlines()))
    return 0
