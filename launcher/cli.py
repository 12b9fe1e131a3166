"""``wrn-launch``: the command line, a thin wrapper over ``launcher.api.launch``.

    wrn-launch --devices 8 [--config FILE] [--set k=v ...] [--key=value ...]
               [--backend auto|ascend|gpu|cpu] [--run-dir DIR | --name NAME] [--dry-run] ...
    wrn-launch model NAME [--num-classes N] [--image-size S]
    wrn-launch runs [DIR] | report RUN_DIR | logs RUN_DIR [--rank K] [--follow]
    wrn-launch --rank-table FILE [--server-ip IP] [--hccl-connect-timeout S] ...
    wrn-launch ranktable --devices 0-7 [--hccn-conf FILE] [--server-ip IP] [-o FILE]
    wrn-launch ranktable merge A.json B.json [-o C.json] | ranktable check FILE
    wrn-launch export CKPT --format MINDIR|ONNX|AIR [--config FILE] [-o OUT] [--verify]

Exit status: 0 success, 1 a worker failed, 2 bad input (one message, nothing started),
128+N interrupted by signal N (130 Ctrl-C, 143 SIGTERM).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Sequence

PROG = "wrn-launch"
#: Subcommands; the ones without a handler are reserved for later releases.
SUBCOMMANDS = ("model", "ranktable", "runs", "report", "logs", "export")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says where to look, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number_type(convert, minimum, noun: str, too_small: str):
    """An argparse type: ``convert`` the text, then require ``value >= minimum``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: {too_small}")
        return value
    return parse


_seconds = _number_type(float, 0, "a number of seconds", "seconds cannot be negative")
_whole_seconds = _number_type(int, 0, "a whole number of seconds", "seconds cannot be negative")
_positive_int = _number_type(int, 1, "a whole number", "must be 1 or more")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the launch command (``wrn-launch [flags]``)."""
    from launcher.ports import DEFAULT_PORT_RANGE
    p = _Parser(prog=PROG, description="Train a Wide ResNet data-parallel on N devices of this "
                "host: plan, start and supervise one MindSpore worker per device.",
                epilog=f"subcommands: {PROG} model NAME (print a model summary), {PROG} runs [DIR] "
                f"(list runs), {PROG} report RUN_DIR (summary, curves, plot), {PROG} logs RUN_DIR "
                f"[--rank K] [--follow], {PROG} ranktable [merge|check] (HCCL rank tables), "
                f"{PROG} export CKPT --format MINDIR|ONNX|AIR. Config keys can "
                "also be given ModelZoo style as --key=value. Exit status: 0 succeeded, 1 a process "
                "of the run failed, 2 bad input (nothing started), 130/143 interrupted by "
                "Ctrl-C/SIGTERM. Everything about a run is in its run directory (run.json, logs/, "
                "metrics.jsonl).")
    p.add_argument("--devices", default=None, metavar="N|IDS",
                   help="a count (8) or device ids (0-3,6); default 1 (with --resume: the run's "
                        "own count). CPU devices are logical")
    p.add_argument("--config", metavar="FILE", help="training config YAML (default: configs/default.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("--backend", default="auto", choices=("auto", "ascend", "gpu", "cpu"),
                   help="default auto: Ascend if /dev/davinci* exists, then GPU, else CPU")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--run-dir", metavar="DIR", help="run directory (must be new or empty)")
    where.add_argument("--name", help="run name: the run directory is runs/<name>-<UTC time> "
                       "(default name: the config's checkpoint_name)")
    p.add_argument("--runs-root", default="runs", metavar="DIR", help="where default run directories go")
    p.add_argument("--dry-run", action="store_true", help="print the plan and start nothing")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue that run in place from its newest "
                   "valid checkpoint (a new attempt; earlier logs are kept)")
    p.add_argument("--resume-ckpt", metavar="FILE", help="start a new run from this checkpoint "
                   "(weights, momentum, LR position, epoch/step; ModelZoo RESUME_CKPT)")
    p.add_argument("--pretrained", metavar="CKPT", help="initialise the weights from CKPT for "
                   "transfer learning (the classifier is dropped when the class count differs)")
    p.add_argument("--force", action="store_true", help="resume even when the config differs in "
                   "fields that change the maths")
    p.add_argument("--max-restarts", type=int, default=0, metavar="K", help="when a run fails, "
                   "restart all workers from the newest valid checkpoint, up to K times")
    p.add_argument("--plain", action="store_true", help="timestamped lines even on a terminal")
    p.add_argument("--json", action="store_true", help="stream every event as one JSON object per "
                   "line on stdout (worker events as in metrics.jsonl; the launcher's own records "
                   "have \"source\": \"launcher\")")
    p.add_argument("--grace", type=_seconds, default=3.0, metavar="S",
                   help="seconds between SIGTERM and SIGKILL when stopping (default 3)")
    p.add_argument("--threads-per-worker", type=_positive_int, metavar="N",
                   help="threads per worker (default: usable cores // workers, at least 1)")
    p.add_argument("--bind-cores", action=argparse.BooleanOptionalAction, default=None,
                   help="pin each worker to its own cores (default: on for several CPU workers "
                   "per host whose threads fit the cores)")
    p.add_argument("--verbose-mindspore", action="store_true",
                   help="keep MindSpore's WARNING logs (default GLOG_v=3 silences them)")
    p.add_argument("--stall-timeout", type=_seconds, default=300.0, metavar="S",
                   help="warn when a worker emits no event for S seconds (default 300)")
    p.add_argument("--stall-kill", type=_seconds, metavar="S",
                   help="treat a silent worker as failed after S seconds (default 2x --stall-timeout)")
    p.add_argument("--startup-timeout", type=_seconds, default=600.0, metavar="S",
                   help="--stall-timeout before a worker's first event (default 600)")
    p.add_argument("--hccn-conf", default="/etc/hccn.conf", metavar="FILE",
                   help="Ascend device IPs (address_<n>=ip lines) for the rank table")
    p.add_argument("--rank-table", metavar="FILE", help="launch this host's ranks of an HCCL "
                   "rank table (hccl_tools/merge_hccl format): RANK_SIZE is the table's total, "
                   "RANK_ID/DEVICE_ID come from it; implies --backend ascend unless given (with "
                   "--backend cpu the same table drives a CPU run of the same world size)")
    p.add_argument("--server-ip", metavar="IP", help="which server of --rank-table this host is "
                   "(default: matched by this host's addresses, then by its hccn.conf device IPs)")
    p.add_argument("--hccl-connect-timeout", type=_whole_seconds, metavar="S",
                   help="HCCL_CONNECT_TIMEOUT for Ascend workers, 120-7200 (default: the "
                   "environment's, else 120)")
    p.add_argument("--hccl-exec-timeout", type=_whole_seconds, metavar="S",
                   help="HCCL_EXEC_TIMEOUT for Ascend workers (default: the environment's, else 1836)")
    p.add_argument("--port", type=int, metavar="P", help="scheduler port (default: a free one)")
    p.add_argument("--port-range", default=f"{DEFAULT_PORT_RANGE[0]}-{DEFAULT_PORT_RANGE[1]}",
                   metavar="LO-HI", help="where a free scheduler port is looked for")
    p.add_argument("--hostfile", metavar="FILE", help="run on several hosts over SSH: lines "
                   "'host slots=N [devices=0-7 user=U port=P python=PY workdir=DIR]' (# comments); "
                   "the first host holds rank 0 and the scheduler")
    p.add_argument("--hosts", metavar="H:N,...", help="short form of --hostfile: --hosts a:8,b:8")
    p.add_argument("--ssh-config", default="~/.ssh/config", metavar="FILE",
                   help="OpenSSH client config to honour (HostName, User, Port, IdentityFile, "
                   "UserKnownHostsFile); default ~/.ssh/config")
    p.add_argument("--ssh-known-hosts", metavar="FILE", help="known_hosts file to verify host "
                   "keys against (default: UserKnownHostsFile, else ~/.ssh/known_hosts)")
    p.add_argument("--ssh-accept-new", action="store_true", help="trust hosts whose key is not "
                   "known yet and remember their keys (default: refuse them)")
    p.add_argument("--ssh-timeout", type=_seconds, default=10.0, metavar="S",
                   help="seconds to connect to each host in the pre-flight (default 10)")
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="set an environment variable for every worker (repeatable; values of "
                   "secret-looking names are masked in run.json)")
    p.add_argument("--env-file", metavar="FILE", help="NAME=VALUE lines added to every worker's "
                   "environment (before --env)")
    # Test hooks, deliberately not in --help: replace the worker / scheduler commands, and look
    # for device nodes somewhere other than /dev.
    p.add_argument("--worker-cmd", help=argparse.SUPPRESS)
    p.add_argument("--scheduler-cmd", help=argparse.SUPPRESS)
    p.add_argument("--dev-dir", default="/dev", help=argparse.SUPPRESS)
    # the run directory's path on the other hosts (default: the same path as here)
    p.add_argument("--remote-run-dir", help=argparse.SUPPRESS)
    return p


def _model_command(argv: Sequence[str]) -> int:
    p = _Parser(prog=f"{PROG} model", description="Print a model's layers, shapes and parameter count.")
    p.add_argument("name", help="wrn50_2, wrn101_2, or CIFAR-style wrn<d>_<k> (e.g. wrn28_10)")
    p.add_argument("--num-classes", type=_positive_int, default=1000)
    p.add_argument("--image-size", type=_positive_int, default=224)
    args = p.parse_args(argv)
    from wrn.models import summary_lines  # imports MindSpore: only here
    try:
        lines = summary_lines(args.name, args.num_classes, args.image_size)
    except ValueError as exc:
        print(f"{PROG} model: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def _ranktable_command(argv: Sequence[str]) -> int:
    """``wrn-launch ranktable [--devices ...] | merge A B -o C | check FILE``."""
    from cluster.devices import parse_devices
    from cluster.errors import PlanError
    from cluster.ranktable.build import default_merged_name, default_table_name, generate_table, \
        merge_tables
    from cluster.ranktable.check import RankTableError, check_table, load_table_json, read_table, \
        table_from_data
    from cluster.ranktable.hccn import gather_device_ips
    from cluster.ranktable.host import primary_ip
    from cluster.ranktable.table import RANK_TABLE_VERSION, is_loopback

    sub = argv[0] if argv and argv[0] in ("merge", "check") else None
    name = f"{PROG} ranktable" + (f" {sub}" if sub else "")
    if sub == "check":
        p = _Parser(prog=name, description="Validate a rank table (hccl_tools or merge_hccl "
                    "style): every problem with its JSON path and fix. Exit 0 valid, 2 not.")
        p.add_argument("file", help="rank table JSON")
        args = p.parse_args(argv[1:])
        try:
            data = load_table_json(args.file)
        except RankTableError as exc:
            print(f"{args.file}: {exc.problems[0]}", file=sys.stderr)
            return 2
        problems, notes = check_table(data)
        if problems:
            for problem in problems:
                print(f"{args.file}: {problem}", file=sys.stderr)
            print(f"{name}: {args.file} has {len(problems)} problem(s)", file=sys.stderr)
            return 2
        try:
            table = table_from_data(data, args.file)
        except PlanError as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            return 2
        print(f"{args.file}: ok: version {RANK_TABLE_VERSION}, {len(table.servers)} server(s), "
              f"{table.world_size} rank(s)")
        print("\n".join(f"  {line}" for line in table.describe().splitlines()))
        for note in notes:
            print(f"note: {note}")
        return 0
    if sub == "merge":
        p = _Parser(prog=name, description="Merge the rank tables of several servers into one, in "
                    "the order given; ranks are renumbered 0..N-1 server by server.")
        p.add_argument("files", nargs="+", metavar="FILE", help="per-server rank tables, in order")
        p.add_argument("-o", "--output", metavar="FILE",
                       help="merged table (default: hccl_<servers>s_<ranks>p.json)")
        args = p.parse_args(argv[1:])
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
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        return _write_table(name, merged, args.output or default_merged_name(merged),
                            f"{len(args.files)} table(s)")
    p = _Parser(prog=name, description="Write an HCCL rank table (version 1.0) for devices of this "
                "host; subcommands: merge FILE... -o FILE, check FILE.")
    p.add_argument("--devices", default="8", metavar="N|IDS",
                   help="a count (8: devices 0-7) or device ids (0-3); default 8")
    p.add_argument("--hccn-conf", metavar="FILE", help="device IPs from this file's "
                   "address_<n>=<ip> lines (default: hccn_tool -i <n> -ip -g, else /etc/hccn.conf)")
    p.add_argument("--server-ip", metavar="IP", help="this host's IP, the table's server_id "
                   "(default: the address of the default route)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="output file (default: hccl_<n>p_<ids>_<server ip>.json, as hccl_tools.py)")
    args = p.parse_args(argv)
    try:
        req = parse_devices(args.devices)
        ids = list(range(req.count)) if req.count is not None else list(req.ids)
        server_ip = args.server_ip or primary_ip()
        ips, source = gather_device_ips(ids, args.hccn_conf)
        table = generate_table(ids, ips, server_ip)
    except PlanError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    if is_loopback(server_ip):
        print(f"warning: server_id {server_ip} is a loopback address: fine for this host alone, "
              f"but a merge with other servers refuses it; pass --server-ip <this host's IP>")
    return _write_table(name, table, args.output or default_table_name(ids, server_ip),
                        f"device IPs from {source}")


def _write_table(name: str, table, output: str, origin: str) -> int:
    import os
    from pathlib import Path

    path = Path(output)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(table.text(), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        print(f"{name}: error: cannot write {path}: {exc.strerror}; choose another path with -o",
              file=sys.stderr)
        return 2
    print(f"wrote {path}: {len(table.servers)} server(s), {table.world_size} rank(s) ({origin})")
    print("\n".join(f"  {line}" for line in table.describe().splitlines()))
    return 0


def _export_command(argv: Sequence[str]) -> int:
    """``wrn-launch export CKPT --format MINDIR|ONNX|AIR [--config FILE] [-o OUT]``."""
    from wrn.config import ConfigError

    p = _Parser(prog=f"{PROG} export", description="Export a checkpoint for inference. The model "
                "comes from the run's config.yaml (found next to RUN/checkpoints/) unless --config "
                "is given. AIR needs an Ascend host.")
    p.add_argument("ckpt", help="checkpoint file (.ckpt)")
    p.add_argument("--format", "--file_format", dest="format", default="MINDIR",
                   help="MINDIR (default), ONNX or AIR")
    p.add_argument("--config", metavar="FILE", help="training config the checkpoint was made with")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("-o", "--output", "--file_name", dest="output", metavar="OUT",
                   help="output file or folder (default: <checkpoint name>.<format> here)")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=_positive_int, default=1,
                   help="batch dimension of the exported input (default 1)")
    p.add_argument("--verify", action="store_true", help="reload the file and compare its "
                   "predictions with the checkpoint's (ONNX: needs onnxruntime)")
    args = p.parse_args(argv)
    from wrn.export import describe, export_checkpoint
    try:
        result = export_checkpoint(args.ckpt, args.format, config=args.config,
                                   overrides=tuple(args.overrides), output=args.output,
                                   batch_size=args.batch_size, verify=args.verify)
    except ConfigError as exc:
        print(f"{PROG} export: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(describe(result)))
    return 0 if result.same_classes in (None, True) else 1


def _launch_command(argv: Sequence[str]) -> int:
    from launcher.api import LaunchError, LaunchOptions, launch
    from launcher.ports import parse_port_range
    from launcher.render import PlainRenderer, make_renderer
    from wrn.config import split_modelzoo_args
    from cluster.errors import PlanError

    zoo, rest = split_modelzoo_args(argv)
    args = build_parser().parse_args(rest)
    try:
        scheduler_cmd = None
        start_scheduler = True
        if args.scheduler_cmd is not None:
            start_scheduler = args.scheduler_cmd.strip().lower() != "none"
            scheduler_cmd = tuple(shlex.split(args.scheduler_cmd)) if start_scheduler else None
        options = LaunchOptions(
            devices=args.devices, config=args.config, overrides=tuple(zoo + args.overrides),
            backend=args.backend, run_dir=args.run_dir, name=args.name, runs_root=args.runs_root,
            dry_run=args.dry_run, grace=args.grace, threads_per_worker=args.threads_per_worker,
            bind_cores=args.bind_cores, verbose_mindspore=args.verbose_mindspore,
            stall_timeout=args.stall_timeout, stall_kill=args.stall_kill,
            startup_timeout=args.startup_timeout, hccn_conf=args.hccn_conf, port=args.port,
            port_range=parse_port_range(args.port_range),
            worker_cmd=tuple(shlex.split(args.worker_cmd)) if args.worker_cmd else None,
            scheduler_cmd=scheduler_cmd, start_scheduler=start_scheduler, dev_dir=args.dev_dir,
            remote_run_dir=args.remote_run_dir,
            command=(PROG, *argv), resume=args.resume, resume_ckpt=args.resume_ckpt,
            pretrained=args.pretrained, force=args.force, max_restarts=args.max_restarts,
            rank_table=args.rank_table, server_ip=args.server_ip,
            hccl_connect_timeout=args.hccl_connect_timeout,
            hccl_exec_timeout=args.hccl_exec_timeout, hostfile=args.hostfile, hosts=args.hosts,
            ssh_config=args.ssh_config, ssh_known_hosts=args.ssh_known_hosts,
            ssh_accept_new=args.ssh_accept_new, ssh_timeout=args.ssh_timeout or 10.0,
            env=tuple(args.env), env_file=args.env_file)
        renderer = make_renderer(sys.stdout, plain=args.plain, json_lines=args.json,
                                 stall_after=args.stall_timeout)
        result = launch(options, renderer=renderer)
    except (LaunchError, PlanError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``wrn-launch``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            if argv[0] == "model":
                return _model_command(argv[1:])
            if argv[0] == "ranktable":
                return _ranktable_command(argv[1:])
            if argv[0] == "export":
                return _export_command(argv[1:])
            if argv[0] in ("runs", "report", "logs"):  # reading run directories back
                from importlib import import_module
                return import_module(f"launcher.{argv[0]}").main(argv[1:])
            print(f"{PROG} {argv[0]}: not available in this version", file=sys.stderr)
            return 2
        return _launch_command(argv)
    except KeyboardInterrupt:  # only before or after supervision; the supervisor handles its own
        return 130


if __name__ == "__main__":
    sys.exit(main())
