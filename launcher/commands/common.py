"""What the subcommands share: the program name, a parser whose usage errors are one line,
the argument types of numbers, output to a file or a console, and running a command alone."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from launcher import PROG

if TYPE_CHECKING:
    from rich.console import Console

#: A flag not given stays out of the namespace (its default is the config's own).
SUPPRESS = argparse.SUPPRESS
#: How a run's status is coloured in ``runs`` and ``report``.
STATUS_STYLE = {"succeeded": "green", "running": "cyan", "failed": "bold red",
                "interrupted": "yellow", "preempted": "yellow", "lost": "bold yellow"}


def output_console(stream: TextIO | None = None) -> Console:
    """Rich output for a command: colours on a terminal; plain text, wide, for pipes and files."""
    from rich.console import Console

    stream = stream or sys.stdout
    if hasattr(stream, "isatty") and stream.isatty():
        return Console(file=stream, highlight=False)
    return Console(file=stream, force_terminal=False, no_color=True, color_system=None,
                   width=160, highlight=False, emoji=False)


def run_alone(name: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
              run: Callable[..., int], argv: Sequence[str] | None, stream: TextIO | None) -> int:
    """Run one of the run-directory commands (``runs``, ``report``, ``logs``) with a parser of
    its own: ``add_arguments`` builds it, ``run(args, stream)`` does the work."""
    parser = argparse.ArgumentParser(prog=f"{PROG} {name}", description=description)
    add_arguments(parser)
    return run(parser.parse_args(argv), stream)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says where to look, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number_type(convert, minimum, noun: str, too_small: str, maximum=None, too_big: str = ""):
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


seconds = number_type(float, 0, "a number of seconds", "seconds cannot be negative")
whole_seconds = number_type(int, 0, "a whole number of seconds", "seconds cannot be negative")
positive_int = number_type(int, 1, "a whole number", "must be 1 or more")
count = number_type(int, 0, "a whole number", "must be 0 or more")
tcp_port = number_type(int, 1, "a TCP port number", "a TCP port is 1-65535", 65535,
                    "a TCP port is 1-65535")



def error(command: str, message: str) -> int:
    """Say one error of ``wrn-launch COMMAND`` on stderr (``wrn-launch COMMAND: error: ...``);
    returns 2, the exit status of bad input."""
    print(f"{PROG}{' ' + command if command else ''}: error: {message}", file=sys.stderr)
    return 2


def write_output(name: str, output: str, data: str | bytes) -> Any:
    """Write ``data`` to ``output`` (``-o``) atomically: its path, or None after one error line."""
    from wrn.fileio import write_atomic

    try:
        return write_atomic(output, data)
    except OSError as exc:
        error(name, f"cannot write {output}: {exc.strerror or exc}; choose another path with -o")
        return None
