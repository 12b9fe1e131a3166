"""``wrn-launch``: the command line, a thin wrapper over ``launcher.api.launch``.

    wrn-launch --devices 8 [--config FILE] [--set k=v ...] [--key=value ...]
               [--backend auto|ascend|gpu|cpu] [--run-dir DIR | --name NAME] [--dry-run] ...
    wrn-launch model NAME [--num-classes N] [--image-size S]

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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds cannot be negative")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 1 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of the launch command (``wrn-launch [flags]``)."""
    from launcher.ports import DEFAULT_PORT_RANGE
    p = _Parser(prog=PROG, description="Train a Wide ResNet data-parallel on N devices of this "
                "host: plan, start and supervise one MindSpore worker per device.",
                epilog=f"subcommands: {PROG} model NAME (print a model summary). Config keys can "
                "also be given ModelZoo style as --key=value. Exit status: 0 succeeded, 1 a process "
                "of the run failed, 2 bad input (nothing started), 130/143 interrupted by "
                "Ctrl-C/SIGTERM. Everything about a run is in its run directory (run.json, logs/, "
                "metrics.jsonl).")
    p.add_argument("--devices", default="1", metavar="N|IDS",
                   help="a count (8) or device ids (0-3,6); default 1. CPU devices are logical")
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
    p.add_argument("--plain", action="store_true", help="timestamped lines even on a terminal")
    p.add_argument("--grace", type=_seconds, default=3.0, metavar="S",
                   help="seconds between SIGTERM and SIGKILL when stopping (default 3)")
    p.add_argument("--threads-per-worker", type=_positive_int, metavar="N",
                   help="threads per worker (default: usable cores // workers, at least 1)")
    p.add_argument("--bind-cores", action="store_true", help="pin each worker to its own cores")
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
    p.add_argument("--port", type=int, metavar="P", help="scheduler port (default: a free one)")
    p.add_argument("--port-range", default=f"{DEFAULT_PORT_RANGE[0]}-{DEFAULT_PORT_RANGE[1]}",
                   metavar="LO-HI", help="where a free scheduler port is looked for")
    # Test hooks, deliberately not in --help: replace the worker / scheduler commands, and look
    # for device nodes somewhere other than /dev.
    p.add_argument("--worker-cmd", help=argparse.SUPPRESS)
    p.add_argument("--scheduler-cmd", help=argparse.SUPPRESS)
    p.add_argument("--dev-dir", default="/dev", help=argparse.SUPPRESS)
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
            command=(PROG, *argv))
        renderer = PlainRenderer(sys.stdout) if args.plain else make_renderer(sys.stdout)
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
            print(f"{PROG} {argv[0]}: not available in this version", file=sys.stderr)
            return 2
        return _launch_command(argv)
    except KeyboardInterrupt:  # only before or after supervision; the supervisor handles its own
        return 130


if __name__ == "__main__":
    sys.exit(main())
