"""``wrn-launch config list | show NAME [-o FILE [--force]]``: the configs bundled with wrn-launch."""

from __future__ import annotations

import argparse
import os
import sys

from launcher import PROG
from launcher.commands.common import Parser, error, write_output

HELP = "list the bundled configs, print or copy one"
DESCRIPTION = ("The configs bundled with wrn-launch (the repository's configs/ folder). Copy one as "
               "the start of your own with 'config show NAME -o my.yaml', then train with "
               "'--config my.yaml'.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``wrn-launch config list`` and ``config show``."""
    commands = p.add_subparsers(dest="config_command", metavar="list|show", parser_class=Parser,
                                required=True)
    commands.add_parser("list", help="the bundled configs, one per line",
                        description="The bundled configs: name and the first line of its "
                        "comments.").set_defaults(config_action=_config_list)
    show = commands.add_parser("show", help="print a bundled config or copy it to a file",
                               description="Print a bundled config exactly as shipped, or with "
                               "-o copy it to FILE.")
    show.add_argument("name", metavar="NAME", help="a name from 'wrn-launch config list'")
    show.add_argument("-o", "--output", metavar="FILE", help="write the config to FILE instead "
                      "of printing it")
    show.add_argument("--force", action="store_true", help="with -o: replace FILE if it exists")
    show.set_defaults(config_action=_config_show)


def _config_list(args: argparse.Namespace) -> int:
    """``config list``: name and first comment line of each bundled config."""
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
    """``config show NAME [-o FILE [--force]]``: print a bundled config, or copy it."""
    from wrn.config import ConfigError, bundled_config_text

    name = "config show"
    try:
        data = bundled_config_text(args.name)
    except ConfigError as exc:
        return error(name, f"{exc} (see {PROG} config list)")
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
        return error(name, f"{args.output} is a folder; give a file name with -o")
    if os.path.lexists(args.output) and not args.force:
        return error(name, f"{args.output} exists; choose another file with -o or pass --force to "
                           f"replace it")
    if write_output(name, args.output, data) is None:
        return 2
    print(f"wrote {args.output}: a copy of the bundled {args.name.removesuffix('.yaml')}; train "
          f"with it: {PROG} --config {args.output}")


def run(args: argparse.Namespace) -> int:
    """``config list`` or ``config show`` (argparse requires one)."""
    return args.config_action(args)
