"""``wrn-launch model NAME``: a model's layers, shapes and parameter count."""

from __future__ import annotations

import argparse

from launcher.commands.common import error, positive_int

HELP = "print a model's layers and parameter count"
DESCRIPTION = "Print a model's layers, shapes and parameter count."


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``wrn-launch model``."""
    p.add_argument("name", help="wrn50_2, wrn101_2, or CIFAR-style wrn<d>_<k> (e.g. wrn28_10)")
    p.add_argument("--num-classes", type=positive_int, default=1000)
    p.add_argument("--image-size", type=positive_int, default=224)


def run(args: argparse.Namespace) -> int:
    """Print the model; exit status 0, or 2 for a name that is no model."""
    from wrn.models import summary_lines  # imports MindSpore: only here
    try:
        lines = summary_lines(args.name, args.num_classes, args.image_size)
    except ValueError as exc:
        return error("model", str(exc))
    print("\n".join(lines))
    return 0
