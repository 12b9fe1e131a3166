"""Where the dataset is: the ``data_path`` checks, the layout on disk, the image count.

Layout on disk (RP2K and the built-in sample, ``wrn.synth``)::

    <data_path>/train/<class name>/<image>.jpg|.jpeg|.png   (any case)
    <data_path>/test/<class name>/...

Class names are arbitrary Unicode folder names (RP2K uses Chinese names with full-width
brackets, spaces, ``%``, ``+`` and ``.``); a name that is not valid UTF-8 is a ``DataError``,
the error every module that reads the dataset raises.

Import cost: the standard library and ``wrn.config`` only, no numpy and no MindSpore: the
launcher and its pre-flight probe import this module (``check_data_path``, ``count_images``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from wrn.config import BUILTIN_DATA, ConfigError
from wrn.fileio import expand_user

#: File name endings (compared case-insensitively) that count as images; all else is ignored.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

_HOW_TO_FIX = ("set data_path in the config file or pass --set data_path=DIR; the directory must "
               "hold train/<class>/ images (and test/<class>/ for evaluation); "
               f"data_path: {BUILTIN_DATA} uses the built-in sample")


class DataError(ConfigError):
    """The dataset on disk cannot be used as it is; ``str()`` names the folder and the fix."""


def _data_path_problem(value: str) -> str | None:
    """Why ``value`` is not a usable dataset folder, or None if it is (builtin counts as fine)."""
    if value == BUILTIN_DATA:
        return None
    if not isinstance(value, str) or not value.strip():
        return f"data_path is empty; {_HOW_TO_FIX}"
    path = expand_user(value)
    if not path.exists():
        return f"data_path {path} does not exist; {_HOW_TO_FIX}"
    if not path.is_dir():
        return f"data_path {path} is a file, not a directory; {_HOW_TO_FIX}"
    if not (path / "train").is_dir():
        hint = ""
        if path.name in ("train", "test") and (path.parent / "train").is_dir():
            hint = f" (did you mean data_path={path.parent}? it is the folder that holds train/)"
        else:
            try:  # look at a bounded number of entries: the folder may hold many files
                inner = sorted(p for p in itertools.islice(path.iterdir(), 1000) if (p / "train").is_dir())
            except OSError:
                inner = []
            if len(inner) == 1:
                hint = f" (did you mean data_path={inner[0]}?)"
        return f"data_path {path} has no train/ folder{hint}; {_HOW_TO_FIX}"
    return None


def check_data_path(value: str) -> None:
    """Raise ``ConfigError`` if ``value`` is not a usable ``data_path``; never generates data.

    For the launcher's pre-flight check: ``BUILTIN_DATA`` is accepted as is (it is created on
    first use); any other value must be a directory holding a ``train/`` folder. The message
    names the key ``data_path``, the path, what is missing and how to fix it.
    """
    problem = _data_path_problem(value)
    if problem:
        raise ConfigError(problem)


def resolve_data_path(value: str, *, log: Callable[[str], None] | None = None) -> Path:
    """Turn a ``data_path`` config value into the absolute dataset folder.

    ``BUILTIN_DATA`` generates the sample set on first use (``wrn.synth.ensure_builtin``; ``log``
    gets one line if it does) and returns its folder. Anything else must pass
    ``check_data_path`` (else ``ConfigError``).
    """
    if value == BUILTIN_DATA:
        from wrn import synth

        return synth.ensure_builtin(log=log).resolve()
    check_data_path(value)
    return expand_user(value).resolve()


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _check_names_utf8(folder: Path, names: Iterable[str]) -> None:
    """``DataError`` when a name read from ``folder`` is not valid UTF-8 (Python keeps the
    undecodable bytes as surrogates; writing it to classes.json or a log would fail)."""
    bad = [n for n in names if not _is_utf8(n)]
    if bad:
        shown = ", ".join(ascii(n) for n in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise DataError(f"{folder} has {len(bad)} folder or file name(s) that are not valid UTF-8 "
                        f"({shown}), e.g. an RP2K archive with GBK (Chinese Windows) names unpacked "
                        f"on Linux; repair the names in place with `wrn-launch data prepare "
                        f"DATA_FOLDER` (or unpack the zip with `wrn-launch data prepare ARCHIVE OUT`, "
                        f"or `unzip -O GBK ...`, or rename with "
                        f"`convmv -f gbk -t utf-8 -r --notest {folder}`)")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def count_images(root: str | os.PathLike, split: str = "train", enough: int | None = None) -> int:
    """How many image files ``root/<split>/<class>/`` holds (by extension, nothing is opened);
    ``DataError`` for names that are not valid UTF-8. For the launcher's check before a run.
    With ``enough``, stops listing class folders once that many are found (every class
    folder's name is still checked): RP2K's 384k files need not be listed to know a step fits."""
    split_dir = Path(root) / split
    total = 0
    with os.scandir(split_dir) as it:
        folders = [e.name for e in it if e.is_dir() and not _is_hidden(e.name)]
    _check_names_utf8(split_dir, folders)
    for name in folders:
        with os.scandir(split_dir / name) as it:
            names = [e.name for e in it if e.name.lower().endswith(IMAGE_EXTENSIONS)]
        _check_names_utf8(split_dir / name, names)
        total += len(names)
        if enough is not None and total >= enough:
            break
    return total
