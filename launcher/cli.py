"""``wrn-launch``: the command line, a thin wrapper over ``launcher.api.launch``.

    wrn-launch --devices 8 [--config FILE] [--set k=v ...] [--key=value ...]
               [--backend auto|ascend|gpu|cpu] [--run-dir DIR | --name NAME] [--dry-run] ...
    wrn-launch model NAME [--num-classes N] [--image-size S]
    wrn-launch sbatch --nodes N [--devices-per-node K] [--requeue] ... -- [launch args]
    wrn-launch runs [DIR] | report RUN_DIR | logs RUN_DIR [--rank K] [--follow]
    wrn-launch --rank-table FILE [--server-ip IP] [--hccl-connect-timeout S] ...
    wrn-launch ranktable --devices 0-7 [--hccn-conf FILE] [--server-ip IP] [-o FILE]
    wrn-launch ranktable merge A.json B.json [-o C.json] | ranktable check FILE
    wrn-launch export CKPT --format MINDIR|ONNX|AIR [--config FILE] [-o OUT] [--verify]
    wrn-launch config list | config show NAME [-o FILE [--force]]
    wrn-launch data prepare ARCHIVE_OR_DIR [OUT] [--verify quick|full|off] [--encoding NAME]
    wrn-launch --version

One argparse parser: the launch flags in argument groups on the top level (their defaults come
from ``launcher.config``, written once there), the other commands as subparsers. The flags
become one ``LaunchConfig``; nothing else reads them.

Exit status: 0 success, 1 a worker failed, 2 bad input (one message, nothing started),
128+N interrupted by signal N (130 Ctrl-C, 143 SIGTERM).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any, Sequence

from launcher.config import ADAPTIVE_FLOOR_S, ADAPTIVE_MULTIPLE, LaunchConfig, default_of

#: Launch flags not given stay out of the namespace, so the config's own defaults apply.
SUPPRESS = argparse.SUPPRESS

PROG = "wrn-launch"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says where to look, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number_type(convert, minimum, noun: str, too_small: str, maximum=None, too_big: str = ""):
    """An argparse type: ``convert`` the text, then require ``minimum <= value (<= maximum)``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: {too_small}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{text!r}: {too_big}")
        return value
    return parse


_seconds = _number_type(float, 0, "a number of seconds", "seconds cannot be negative")
_whole_seconds = _number_type(int, 0, "a whole number of seconds", "seconds cannot be negative")
_positive_int = _number_type(int, 1, "a whole number", "must be 1 or more")
_count = _number_type(int, 0, "a whole number", "must be 0 or more")
_tcp_port = _number_type(int, 1, "a TCP port number", "a TCP port is 1-65535", 65535,
                         "a TCP port is 1-65535")


def _rank_list(text: str) -> tuple[int, ...]:
    from launcher.config import LaunchError, parse_rank_list
    try:
        return parse_rank_list(text)
    except LaunchError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--tail-ranks ", "")) from None


def _port_range(text: str) -> tuple[int, int]:
    from cluster.errors import PlanError
    from launcher.ports import parse_port_range
    try:
        return parse_port_range(text)
    except PlanError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--port-range ", "")) from None


def _add_launch_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of a launch, in groups; every default shown is ``launcher.config``'s.

    Flags not given on the command line are absent from the namespace (``SUPPRESS``), so the
    config's own defaults apply."""
    _add_what_arguments(p)
    _add_where_arguments(p)
    _add_run_dir_arguments(p)
    _add_supervision_arguments(p)
    _add_output_arguments(p)
    _add_ascend_arguments(p)
    _add_ssh_arguments(p)
    _add_testing_arguments(p)


def _add_what_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_argument_group("what to train")
    what.add_argument("--config", dest="config_file", metavar="FILE", default=SUPPRESS,
                      help="training config YAML (default: the bundled default.yaml, see "
                           "'wrn-launch config show default')")
    what.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=SUPPRESS,
                      help="override a config key (repeatable); ModelZoo style --key=value works too")
    what.add_argument("--resume", metavar="RUN_DIR", default=SUPPRESS, help="continue that run in place "
                      "from its newest valid checkpoint, on its own hosts (a new attempt; earlier "
                      "logs are kept)")
    what.add_argument("--resume-ckpt", metavar="FILE", default=SUPPRESS, help="start a new run from this "
                      "checkpoint (weights, momentum, LR position, epoch/step; ModelZoo RESUME_CKPT)")
    what.add_argument("--pretrained", metavar="CKPT", default=SUPPRESS, help="initialise the weights "
                      "from CKPT for transfer learning (the classifier is dropped when the class "
                      "count differs)")
    what.add_argument("--force", action="store_true", default=SUPPRESS, help="resume even when the "
                      "config differs in fields that change the maths")
    what.add_argument("--rescan", action="store_true", default=SUPPRESS, help="list and verify the "
                      "data again instead of reusing the run's data index (a restart or --resume "
                      "reuses it while no data folder has changed)")


def _add_where_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_argument_group("where it runs")
    where.add_argument("--devices", metavar="N|IDS", default=SUPPRESS,
                       help="a count (8) or device ids (0-3,6); default 1 (with --resume: the "
                            "run's own count). CPU devices are logical")
    where.add_argument("--backend", choices=("auto", "ascend", "gpu", "cpu"), default=SUPPRESS,
                       help=f"default {default_of('backend')}: Ascend if /dev/davinci* exists, "
                            f"then GPU if the installed MindSpore can use one (the pinned "
                            f"2.10 cannot), else CPU")
    where.add_argument("--hostfile", metavar="FILE", default=SUPPRESS, help="run on several hosts over "
                       "SSH: lines 'host slots=N [devices=0-7 user=U port=P python=PY "
                       "workdir=DIR]' (# comments); the first host holds rank 0 and the scheduler")
    where.add_argument("--hosts", metavar="H:N,...", default=SUPPRESS,
                       help="short form of --hostfile: --hosts a:8,b:8")
    where.add_argument("--launcher", choices=("auto", "local", "ssh", "slurm"), default=SUPPRESS,
                       help="how processes start (default auto: slurm inside a Slurm allocation "
                            "without --hostfile/--hosts/--devices, ssh with --hostfile/--hosts, "
                            "else local)")
    where.add_argument("--devices-per-node", type=_positive_int, metavar="K", default=SUPPRESS,
                       help="Slurm: devices (workers) per node (default: the allocation's GPUs "
                            "or tasks per node)")
    pick = where.add_mutually_exclusive_group()
    pick.add_argument("--include", metavar="HOST[:DEVS]@...", default=SUPPRESS,
                      help="run only on these hosts (and devices) of the host list, DeepSpeed "
                           "style: --include node1@node2:0,1")
    pick.add_argument("--exclude", metavar="HOST[:DEVS]@...", default=SUPPRESS,
                      help="leave out these hosts (or only these devices of a host): "
                           "--exclude node3 or --exclude node2:2-3")
    where.add_argument("--threads-per-worker", type=_positive_int, metavar="N", default=SUPPRESS,
                       help="threads per worker (default: usable cores // workers, at least 1)")
    where.add_argument("--bind-cores", "--bind-core", action=argparse.BooleanOptionalAction,
                       default=SUPPRESS,
                       help="pin each worker to its own cores (default: on for several CPU "
                            "workers per host whose threads fit the cores, and for Ascend "
                            "workers: cores of their device's NUMA node, as msrun --bind_core)")
    where.add_argument("--port", type=_tcp_port, metavar="P", default=SUPPRESS,
                       help="scheduler port (default: a free one)")
    lo, hi = default_of("port_range")
    where.add_argument("--port-range", type=_port_range, metavar="LO-HI", default=SUPPRESS,
                       help=f"where a free scheduler port is looked for (default {lo}-{hi})")
    where.add_argument("--env", action="append", metavar="K=V", default=SUPPRESS,
                       help="set an environment variable for every worker (repeatable; values of "
                            "secret-looking names are masked in run.json)")
    where.add_argument("--env-file", metavar="FILE", default=SUPPRESS, help="NAME=VALUE lines added to "
                       "every worker's environment (before --env)")


def _add_run_dir_arguments(p: argparse.ArgumentParser) -> None:
    run = p.add_argument_group("the run directory and restarts")
    names = run.add_mutually_exclusive_group()
    names.add_argument("--run-dir", metavar="DIR", default=SUPPRESS,
                       help="run directory (must be new or empty)")
    names.add_argument("--name", default=SUPPRESS, help="run name: the run directory is "
                       "runs/<name>-<UTC time> (default name: the config's checkpoint_name)")
    run.add_argument("--runs-root", metavar="DIR", default=SUPPRESS,
                     help=f"where default run directories go (default {default_of('runs_root')})")
    run.add_argument("--dry-run", action="store_true", default=SUPPRESS,
                     help="print the plan and start nothing")
    run.add_argument("--max-restarts", type=_count, metavar="K", default=SUPPRESS, help="when a run "
                     "fails, restart all workers from the newest valid checkpoint, up to K times")
    run.add_argument("--standby", action="store_true", default=SUPPRESS,
                     help="with --max-restarts, CPU workers: once training runs, start the next "
                          "attempt's workers and let them wait, set up and joined, so that a "
                          "restart continues in seconds (costs a second set of processes and "
                          "their memory on every host)")
    run.add_argument("--min-devices", type=_positive_int, metavar="M", default=SUPPRESS,
                     help="with --max-restarts and several hosts: a restart leaves out hosts that "
                          "fail its pre-flight (unreachable, devices missing) and continues on the "
                          "rest while at least M devices remain (default: every host is needed)")


def _add_supervision_arguments(p: argparse.ArgumentParser) -> None:
    sup = p.add_argument_group("supervision")
    sup.add_argument("--grace", type=_seconds, metavar="S", default=SUPPRESS, help="seconds between "
                     f"SIGTERM and SIGKILL when stopping (default {default_of('grace'):g})")
    sup.add_argument("--stall-timeout", type=_seconds, metavar="S", default=SUPPRESS,
                     help="warn when a worker emits no event for S seconds (default: adaptive, "
                          f"{ADAPTIVE_MULTIPLE:g}x the slowest rank's median time between step "
                          f"events, at least {ADAPTIVE_FLOOR_S:g} s); its stacks and every "
                          f"other rank's go to RUN/diagnostics/ when it is failed")
    sup.add_argument("--stall-kill", type=_seconds, metavar="S", default=SUPPRESS, help="treat a silent "
                     "worker as failed after S seconds (default 2x --stall-timeout; after an "
                     "epoch's end both grow by that epoch's duration, for evaluation)")
    sup.add_argument("--startup-timeout", type=_seconds, metavar="S", default=SUPPRESS,
                     help=f"--stall-timeout before a worker's first step (import, start-up, "
                          f"graph compile; default {default_of('startup_timeout'):g})")
    sup.add_argument("--heartbeat-timeout", type=_seconds, metavar="S", default=SUPPRESS,
                     help="a host's agent stops its workers when it has heard nothing from the "
                          "launcher for S seconds (launcher stopped, hung or cut off by the "
                          f"network; default {default_of('heartbeat_timeout'):g})")


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    out = p.add_argument_group("output")
    out.add_argument("--plain", action="store_true", help="timestamped lines even on a terminal")
    out.add_argument("--json", action="store_true", help="stream every event as one JSON object "
                     "per line on stdout (worker events as in metrics.jsonl; the launcher's own "
                     "records have \"source\": \"launcher\")")
    out.add_argument("--tail-ranks", type=_rank_list, metavar="RANKS", default=SUPPRESS,
                     help="also show these ranks' log lines on the console, e.g. 0,3 or 0-3 "
                          "(default none; every rank's lines are always in logs/)")
    out.add_argument("--verbose-mindspore", action="store_true", default=SUPPRESS,
                     help="keep MindSpore's WARNING logs (default GLOG_v=3 silences them)")


def _add_ascend_arguments(p: argparse.ArgumentParser) -> None:
    ascend = p.add_argument_group("Ascend")
    ascend.add_argument("--hccn-conf", metavar="FILE", default=SUPPRESS, help="Ascend device IPs "
                        f"(address_<n>=ip lines) for the rank table (default {default_of('hccn_conf')})")
    ascend.add_argument("--rank-table", metavar="FILE", default=SUPPRESS, help="launch this host's ranks "
                        "of an HCCL rank table (hccl_tools/merge_hccl format): RANK_SIZE is the "
                        "table's total, RANK_ID/DEVICE_ID come from it; implies --backend ascend "
                        "unless given (with --backend cpu the same table drives a CPU run of the "
                        "same world size)")
    ascend.add_argument("--server-ip", metavar="IP", default=SUPPRESS, help="which server of "
                        "--rank-table this host is (default: matched by this host's addresses, "
                        "then by its hccn.conf device IPs)")
    ascend.add_argument("--ascend-startup", choices=("dynamic", "ranktable"), default=SUPPRESS,
                        help="how Ascend workers meet: 'dynamic' (default), MindSpore's dynamic "
                             "cluster, a scheduler plus MS_WORKER processes, as msrun starts "
                             "them; 'ranktable', the HCCL rank table alone (RANK_TABLE_FILE, no "
                             "scheduler), for MindSpore before 2.4 and the ModelZoo scripts")
    ascend.add_argument("--hccl-rank-table", action="store_true", default=SUPPRESS,
                        help="with the dynamic cluster, also write the rank table from "
                             "--hccn-conf and hand it to HCCL as RANK_TABLE_FILE (msrun "
                             "--rank_table_file); implied by --rank-table")
    ascend.add_argument("--hccl-connect-timeout", type=_whole_seconds, metavar="S", default=SUPPRESS,
                        help="HCCL_CONNECT_TIMEOUT for Ascend workers, 120-7200 (default: the "
                             "environment's, else 120)")
    ascend.add_argument("--hccl-exec-timeout", type=_whole_seconds, metavar="S", default=SUPPRESS,
                        help="HCCL_EXEC_TIMEOUT for Ascend workers (default: the environment's, "
                             "else 1836)")


def _add_ssh_arguments(p: argparse.ArgumentParser) -> None:
    ssh = p.add_argument_group("SSH (with --hostfile/--hosts)")
    ssh.add_argument("--ssh-config", metavar="FILE", default=SUPPRESS, help="OpenSSH client config to "
                     "honour (HostName, User, Port, IdentityFile, UserKnownHostsFile); default "
                     f"{default_of('ssh_config')}")
    ssh.add_argument("--ssh-known-hosts", metavar="FILE", default=SUPPRESS, help="known_hosts file to "
                     "verify host keys against (default: UserKnownHostsFile, else ~/.ssh/known_hosts)")
    ssh.add_argument("--ssh-accept-new", action="store_true", default=SUPPRESS, help="trust hosts whose "
                     "key is not known yet and remember their keys (default: refuse them)")
    ssh.add_argument("--ssh-timeout", type=_seconds, metavar="S", default=SUPPRESS,
                     help=f"seconds to connect to each host in the pre-flight (default "
                          f"{default_of('ssh_timeout'):g})")


def _add_testing_arguments(p: argparse.ArgumentParser) -> None:
    # Testing and simulation aids, deliberately not in --help: replace the worker / scheduler
    # commands ("none": no scheduler), look for device nodes somewhere other than /dev (and
    # sysfs other than /sys), and the run directory's path on the other hosts (default: the
    # same path as here).
    p.add_argument("--worker-cmd", default=SUPPRESS, help=SUPPRESS)
    p.add_argument("--scheduler-cmd", default=SUPPRESS, help=SUPPRESS)
    p.add_argument("--dev-dir", default=SUPPRESS, help=SUPPRESS)
    p.add_argument("--sys-dir", default=SUPPRESS, help=SUPPRESS)
    p.add_argument("--remote-run-dir", default=SUPPRESS, help=SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the launch flags on the top level, the other commands as
    subcommands (each sets ``args.run`` to its handler)."""
    from launcher import data_cmd, logs, report, runs, sbatch

    p = _Parser(prog=PROG, description="Train a Wide ResNet data-parallel on N devices of this "
                "host or of several hosts: plan, start and supervise one MindSpore worker per "
                "device.",
                epilog="Config keys can also be given ModelZoo style as --key=value. Exit status: "
                "0 succeeded, 1 a process of the run failed, 2 bad input (nothing started), "
                "130/143 interrupted by Ctrl-C/SIGTERM. Everything about a run is in its run "
                "directory (run.json, logs/, metrics.jsonl).")
    p.add_argument("--version", action=_VersionAction,
                   help="print the version, where it is installed, python and MindSpore; exit")
    _add_launch_arguments(p)
    subs = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser,
                            title="other commands (wrn-launch COMMAND --help)")
    _add_model_command(subs)
    _add_ranktable_command(subs)
    _add_export_command(subs)
    _add_config_command(subs)
    sbatch_cmd = subs.add_parser("sbatch", help="run as a Slurm batch job",
                                 description=sbatch.DESCRIPTION)
    sbatch.add_arguments(sbatch_cmd)
    sbatch_cmd.set_defaults(run=sbatch.run)
    data_cmd.add_command(subs, _Parser)
    for module, summary in ((runs, "list runs"), (report, "summary, curves and plot of a run"),
                            (logs, "print or follow a run's logs")):
        name = module.__name__.rsplit(".", 1)[1]
        sub = subs.add_parser(name, help=summary, description=module.DESCRIPTION)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return p


def version_text() -> str:
    """``wrn-launch 0.1.0 from FOLDER (installed|source; python X, mindspore Y)``."""
    from wrn_launch import installation, versions

    info, have = installation(), versions()
    how = "installed" if info["installed"] else "source"
    return (f"{PROG} {info['version']} from {info['location']} ({how}; python {have['python']}, "
            f"mindspore {have['mindspore'] or 'not installed'})")


class _VersionAction(argparse.Action):
    """``--version``: ``version_text()`` as one unwrapped line, computed only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(version_text())
        parser.exit(0)


def launch_config(args: argparse.Namespace, overrides: Sequence[str], argv: Sequence[str]) -> LaunchConfig:
    """The ``LaunchConfig`` of parsed launch flags (only those given; defaults are the config's)."""
    values: dict[str, Any] = {k: v for k, v in vars(args).items()
                              if k not in ("plain", "json", "command", "run")}
    values["overrides"] = tuple(overrides) + tuple(values.get("overrides", ()))
    if "worker_cmd" in values:
        values["worker_cmd"] = tuple(shlex.split(values["worker_cmd"])) or None
    if "scheduler_cmd" in values:
        text = values.pop("scheduler_cmd")
        if text.strip().lower() == "none":
            values["start_scheduler"] = False
        else:
            values["scheduler_cmd"] = tuple(shlex.split(text)) or None
    values["command"] = (PROG, *argv)
    return LaunchConfig.from_fields(**values)


def _launch(args: argparse.Namespace, overrides: Sequence[str], argv: Sequence[str]) -> int:
    from cluster.errors import PlanError
    from launcher.api import launch
    from launcher.config import LaunchError
    from launcher.renderers import make_renderer

    try:
        config = launch_config(args, overrides, argv)
        renderer = make_renderer(sys.stdout, plain=args.plain, json_lines=args.json,
                                 stall_after=config.supervisor.stall_timeout or ADAPTIVE_FLOOR_S,
                                 tail_ranks=config.tail_ranks)
        result = launch(config, renderer=renderer)
    except (LaunchError, PlanError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``wrn-launch``; returns the exit status.

    ModelZoo ``--key=value`` config overrides are taken out before parsing; if the parse then
    names a subcommand, the command line is parsed again as it was (a subcommand's own flags,
    such as export's ``--batch_size``, are its own)."""
    from wrn.config import split_modelzoo_args

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        overrides, rest = split_modelzoo_args(argv)
        args = parser.parse_args(rest)
        if args.command is not None:
            args = parser.parse_args(argv)
            return args.run(args)
        return _launch(args, overrides, argv)
    except KeyboardInterrupt:  # only before or after supervision; the monitor handles its own
        return 130


# -- subcommands ----------------------------------------------------------------------------------
def _add_model_command(subs: Any) -> None:
    p = subs.add_parser("model", help="print a model's layers and parameter count",
                        description="Print a model's layers, shapes and parameter count.")
    p.add_argument("name", help="wrn50_2, wrn101_2, or CIFAR-style wrn<d>_<k> (e.g. wrn28_10)")
    p.add_argument("--num-classes", type=_positive_int, default=1000)
    p.add_argument("--image-size", type=_positive_int, default=224)
    p.set_defaults(run=_model_command)


def _model_command(args: argparse.Namespace) -> int:
    from wrn.models import summary_lines  # imports MindSpore: only here
    try:
        lines = summary_lines(args.name, args.num_classes, args.image_size)
    except ValueError as exc:
        print(f"{PROG} model: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def _add_ranktable_command(subs: Any) -> None:
    p = subs.add_parser("ranktable", help="write, merge or check HCCL rank tables",
                        description="Write an HCCL rank table (version 1.0) for devices of this "
                        "host; subcommands: merge FILE... -o FILE, check FILE.")
    p.add_argument("--devices", default="8", metavar="N|IDS",
                   help="a count (8: devices 0-7) or device ids (0-3); default 8")
    p.add_argument("--hccn-conf", metavar="FILE", help="device IPs from this file's "
                   "address_<n>=<ip> lines (default: hccn_tool -i <n> -ip -g, else /etc/hccn.conf)")
    p.add_argument("--server-ip", metavar="IP", help="this host's IP, the table's server_id "
                   "(default: the address of the default route)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="output file (default: hccl_<n>p_<ids>_<server ip>.json, as hccl_tools.py)")
    p.set_defaults(run=_ranktable_generate)
    tables = p.add_subparsers(dest="table_command", metavar="merge|check", parser_class=_Parser)
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
    from cluster.ranktable.check import RankTableError, check_table, load_table_json, table_from_data
    from cluster.ranktable.table import RANK_TABLE_VERSION
    from cluster.errors import PlanError

    name = f"{PROG} ranktable check"
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


def _ranktable_merge(args: argparse.Namespace) -> int:
    from cluster.ranktable.build import default_merged_name, merge_tables
    from cluster.ranktable.check import read_table
    from cluster.errors import PlanError

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
    return _write_table(f"{PROG} ranktable merge", merged,
                        args.output or default_merged_name(merged), f"{len(args.files)} table(s)")


def _ranktable_generate(args: argparse.Namespace) -> int:
    from cluster.ranktable.build import default_table_name, generate_table
    from cluster.ranktable.hccn import gather_device_ips
    from cluster.ranktable.host import primary_ip
    from cluster.ranktable.table import is_loopback
    from cluster.devices import parse_devices
    from cluster.errors import PlanError

    name = f"{PROG} ranktable"
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


def _write_output(name: str, output: str, data: str | bytes) -> Any:
    """Write ``data`` to ``output`` (``-o``) atomically: its path, or None after one error line."""
    from wrn.fileio import write_atomic

    try:
        return write_atomic(output, data)
    except OSError as exc:
        print(f"{name}: error: cannot write {output}: {exc.strerror or exc}; choose another path "
              f"with -o", file=sys.stderr)
        return None


def _write_table(name: str, table, output: str, origin: str) -> int:
    path = _write_output(name, output, table.text())
    if path is None:
        return 2
    print(f"wrote {path}: {len(table.servers)} server(s), {table.world_size} rank(s) ({origin})")
    print("\n".join(f"  {line}" for line in table.describe().splitlines()))
    return 0


def _add_export_command(subs: Any) -> None:
    """``wrn-launch export CKPT --format MINDIR|ONNX|AIR [--config FILE] [-o OUT]``."""
    p = subs.add_parser("export", help="export a checkpoint for inference",
                        description="Export a checkpoint for inference. The model comes from the "
                        "run's config.yaml (found next to RUN/checkpoints/) unless --config is "
                        "given. AIR needs an Ascend host.")
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
    p.set_defaults(run=_export_command)


def _export_command(args: argparse.Namespace) -> int:
    from wrn.config import ConfigError
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


def _add_config_command(subs: Any) -> None:
    """``wrn-launch config list`` and ``config show NAME [-o FILE] [--force]``."""
    p = subs.add_parser("config", help="list the bundled configs, print or copy one",
                        description="The configs bundled with wrn-launch (the repository's "
                        "configs/ folder). Copy one as the start of your own with "
                        "'config show NAME -o my.yaml', then train with '--config my.yaml'.")
    commands = p.add_subparsers(dest="config_command", metavar="list|show", parser_class=_Parser,
                                required=True)
    commands.add_parser("list", help="the bundled configs, one per line",
                        description="The bundled configs: name and the first line of its "
                        "comments.").set_defaults(run=_config_list)
    show = commands.add_parser("show", help="print a bundled config or copy it to a file",
                               description="Print a bundled config exactly as shipped, or with "
                               "-o copy it to FILE.")
    show.add_argument("name", metavar="NAME", help="a name from 'wrn-launch config list'")
    show.add_argument("-o", "--output", metavar="FILE", help="write the config to FILE instead "
                      "of printing it")
    show.add_argument("--force", action="store_true", help="with -o: replace FILE if it exists")
    show.set_defaults(run=_config_show)


def _config_list(args: argparse.Namespace) -> int:
    from wrn.config import bundled_configs

    configs = bundled_configs()
    width = max(map(len, configs), default=0)
    for name, resource in configs.items():
        comments = [line for line in resource.read_text(encoding="utf-8").splitlines()
                    if line.startswith("#")]
        about = comments[0].lstrip("# ").strip() if comments else ""
        print(f"{name:<{width}}  {about}".rstrip())
    return 0


def _config_show(args: argparse.Namespace) -> int:
    import os

    from wrn.config import ConfigError, bundled_config_text

    name = f"{PROG} config show"
    try:
        data = bundled_config_text(args.name)
    except ConfigError as exc:
        print(f"{name}: error: {exc} (see {PROG} config list)", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.flush()
        out = getattr(sys.stdout, "buffer", None)
        if out is not None:
            out.write(data)
            out.flush()
        else:
            sys.stdout.write(data.decode("utf-8"))
        return 0
    if os.path.isdir(args.output):
        print(f"{name}: error: {args.output} is a folder; give a file name with -o",
              file=sys.stderr)
        return 2
    if os.path.lexists(args.output) and not args.force:
        print(f"{name}: error: {args.output} exists; choose another file with -o or pass --force "
              f"to replace it", file=sys.stderr)
        return 2
    if _write_output(name, args.output, data) is None:
        return 2
    print(f"wrote {args.output}: a copy of the bundled {args.name.removesuffix('.yaml')}; train "
          f"with it: {PROG} --config {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
