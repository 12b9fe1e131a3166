"""``wrn-launch``: the command line, a thin wrapper over ``launcher.api.launch``.

    wrn-launch --devices 8 [--config FILE] [--set k=v ...] [--key=value ...]
               [--backend auto|ascend|gpu|cpu] [--run-dir DIR | --name NAME] [--dry-run] ...
    wrn-launch model NAME [--num-classes N] [--image-size S]
    wrn-launch sbatch --nodes N [--devices-per-node K] [--requeue] ... -- [launch args]
    wrn-launch runs [DIR] | report RUN_DIR | logs RUN_DIR [--rank K] [--follow]
    wrn-launch --rank-table FILE [--server-ip IP] [--hccl-connect-timeout S] ...
    wrn-launch ranktable --devices 0-7 [--hccn-conf FILE] [--server-ip IP] [-o FILE]
    wrn-launch ranktable merge A.json B.json [-o C.json] | ranktable check FILE
    wrn-launch eval CKPT_OR_RUN_DIR [--devices N | --hostfile FILE ...] [--set k=v ...]
    wrn-launch export CKPT --format MINDIR|ONNX|AIR [--config FILE] [-o OUT] [--verify]
    wrn-launch predict MODEL IMAGES... [--top-k K] [-o FILE.csv|.json] [--batch-size B]
    wrn-launch config list | config show NAME [-o FILE [--force]]
    wrn-launch data prepare ARCHIVE_OR_DIR [OUT] [--verify quick|full|off] [--encoding NAME]
    wrn-launch --version

This module only assembles: one argparse parser with the launch flags on the top level
(``launcher.commands.launch``) and every other command as a subparser, each from its own module
in ``launcher.commands`` (``HELP``, ``DESCRIPTION``, ``add_arguments(parser)``, ``run(args)``).

Exit status: 0 success, 1 a worker failed, 2 bad input (one message, nothing started),
128+N interrupted by signal N (130 Ctrl-C, 143 SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from launcher import PROG
from launcher.commands import COMMANDS, launch
from launcher.commands.common import SUPPRESS, Parser


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the launch flags on the top level, the other commands as
    subcommands (each sets ``args.run`` to its module's ``run``)."""
    p = Parser(prog=PROG, description="Train a Wide ResNet data-parallel on N devices of this "
               "host or of several hosts: plan, start and supervise one MindSpore worker per "
               "device.",
               epilog="Config keys can also be given ModelZoo style as --key=value. Exit status: "
               "0 succeeded, 1 a process of the run failed, 2 bad input (nothing started), "
               "130/143 interrupted by Ctrl-C/SIGTERM. Everything about a run is in its run "
               "directory (run.json, logs/, metrics.jsonl).")
    p.add_argument("--version", action=_VersionAction,
                   help="print the version, where it is installed, python and MindSpore; exit")
    launch.add_arguments(p)
    subs = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser,
                            title="other commands (wrn-launch COMMAND --help)")
    for name in COMMANDS:
        module = importlib.import_module(f"launcher.commands.{name}")
        sub = subs.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return p


def version_text() -> str:
    """``wrn-launch 0.1.0 from FOLDER (installed|source; python X, mindspore Y)``."""
    from launcher.installation import installation, versions

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
            args.argv = tuple(argv)  # the command line as given, for a run's run.json
            return args.run(args)
        return launch.run(args, overrides, argv)
    except KeyboardInterrupt:  # only before or after supervision; the monitor handles its own
        return 130


if __name__ == "__main__":
    sys.exit(main())
