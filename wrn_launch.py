"""The ``wrn-launch`` command's entry point: checks that the project's import names are its own.

The project's packages keep short top-level names (``wrn``, ``launcher``, ``cluster``) that other
Python code may use too. In a shared environment pip would install two distributions with the
same name into the same folder (one overwriting the other's files), and a folder on PYTHONPATH
would shadow an installed package. This module carries the distribution's own name, so it still
imports when that happened: ``main`` checks first (``clashes``) and says in one paragraph what is
wrong and what to do, instead of an ImportError, or the other project's code, somewhere later.
The pre-flight runs the same checks on other hosts (where this installation is:
``launcher.installation``).

Nothing here imports the project's packages before they have been checked.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys

#: The distribution's name (``pip install wrn-launch``, ``importlib.metadata``): the same as
#: ``launcher.installation.DIST_NAME``, which this module cannot import before its check.
DIST_NAME = "wrn-launch"
#: The top-level packages the distribution installs, all in one folder.
PACKAGES = ("wrn", "launcher", "cluster")

_HERE = os.path.dirname(os.path.realpath(__file__))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def package_folder(name: str) -> str | None:
    """The folder ``import name`` would load the package (or module) from, without importing it;
    None when nothing of that name is importable."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    where = list(spec.submodule_search_locations or ())
    if where:
        return os.path.dirname(os.path.realpath(where[0]))
    return os.path.dirname(os.path.realpath(spec.origin)) if spec.origin else None


def _top_level_names(dist: importlib.metadata.Distribution) -> set[str]:
    """The top-level import names a distribution installs (its top_level.txt, else its RECORD)."""
    listed = dist.read_text("top_level.txt")
    if listed is not None:
        return set(listed.split())
    names = set()
    for line in (dist.read_text("RECORD") or "").splitlines():
        path = line.split(",", 1)[0]
        head, sep, _ = path.partition("/")
        if sep:
            names.add(head)
        elif path.endswith(".py"):
            names.add(path[:-3])
    return names


def other_distributions() -> dict[str, list[str]]:
    """Installed distributions other than this one that also install one of ``PACKAGES``:
    package name -> "name version" of each such distribution."""
    found: dict[str, list[str]] = {}
    for dist in importlib.metadata.distributions():
        shared = _top_level_names(dist).intersection(PACKAGES)
        if not shared:
            continue
        name = dist.metadata["Name"] or "?"
        if _normal(name) == DIST_NAME:
            continue
        for package in shared:
            found.setdefault(package, []).append(f"{name} {dist.version}")
    return found


def clashes() -> list[str]:
    """What is wrong with the import names here (empty: all of ``PACKAGES`` load from this
    module's folder and no other distribution installs any of them)."""
    problems = []
    for name in PACKAGES:
        folder = package_folder(name)
        if folder is None:
            problems.append(f"'{name}' is not importable (expected in {_HERE})")
        elif folder != _HERE:
            problems.append(f"'{name}' loads from {folder}, not from {_HERE} where this "
                            f"wrn-launch is")
    for name, dists in sorted(other_distributions().items()):
        problems.append(f"'{name}' is also installed by {', '.join(sorted(dists))}")
    return problems


def clash_message(problems: list[str], python: str | None = None) -> str:
    """One paragraph: what clashes and how to install the project so that nothing does."""
    return (f"the import names of wrn-launch clash with other Python code for "
            f"{python or sys.executable}: {'; '.join(problems)}. wrn-launch's packages have short, "
            f"generic top-level names ({', '.join(PACKAGES)}), so install it into an environment "
            f"of its own (pipx install wrn_launch-<version>-py3-none-any.whl, or a fresh "
            f"'python3.11 -m venv' and its pip), and keep other projects' folders with such "
            f"packages off PYTHONPATH")


def main(argv: list[str] | None = None) -> int:
    """``wrn-launch``: check the import names, then run the command line."""
    problems = clashes()
    if problems:
        print(f"wrn-launch: error: {clash_message(problems)}", file=sys.stderr)
        return 2
    from launcher.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
