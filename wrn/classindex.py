"""The class index: the class names of ``train/``, whose position in the list is the label.

The class index is *pinned* from ``train/``: sorted folder names, saved as ``classes.json``
next to the checkpoints, and reused for evaluation, so a test split that lacks some classes
still gets the right labels.

Import cost: the standard library and light ``wrn`` modules only (no numpy, no MindSpore).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from wrn.datapath import _HOW_TO_FIX, DataError, _check_names_utf8, _is_hidden
from wrn.fileio import write_json_atomic


def build_class_index(root: str | os.PathLike) -> list[str]:
    """The class names of ``root/train``: its sub-folder names, sorted as plain Python strings.

    The position in this list is the label. Hidden folders (names starting with ``.``) are
    ignored. Raises ``DataError`` if ``train/`` is missing or has no class folders.
    """
    train = Path(root) / "train"
    if not train.is_dir():
        raise DataError(f"{train} does not exist; {_HOW_TO_FIX}")
    with os.scandir(train) as it:
        classes = sorted(e.name for e in it if e.is_dir() and not _is_hidden(e.name))
    _check_names_utf8(train, classes)
    if not classes:
        raise DataError(f"{train} has no class folders; expected {train}/<class>/<image>.jpg")
    return classes


def _index_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / "classes.json" if path.is_dir() else path


def save_class_index(classes: Sequence[str], path: str | os.PathLike) -> Path:
    """Write ``classes`` as a JSON list (UTF-8, not ASCII-escaped), atomically; return the file.

    ``path`` is the file, or a directory to write ``classes.json`` into. The list is written to
    a temporary file in the same folder, flushed to disk and renamed over the target.
    """
    classes = _validated_classes(classes, "save_class_index")
    return write_json_atomic(_index_file(path), classes, indent=0, fsync=True)


def load_class_index(path: str | os.PathLike) -> list[str]:
    """Read a class index written by ``save_class_index`` (a file, or a folder holding
    ``classes.json``). Raises ``DataError`` if it is missing or not a list of unique names."""
    target = _index_file(path)
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"class index {target} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"class index {target} cannot be read: {exc}") from None
    try:
        return _validated_classes(data, str(target))
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _validated_classes(classes: Iterable[str], where: str) -> list[str]:
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
        raise ValueError(f"{where}: the class index must be a list of names")
    out = list(classes)
    if not out or not all(isinstance(c, str) and c for c in out):
        raise ValueError(f"{where}: the class index must be a non-empty list of non-empty names")
    if len(set(out)) != len(out):
        dup = sorted({c for c in out if out.count(c) > 1})
        raise ValueError(f"{where}: duplicate class names in the class index: {dup[:5]}")
    return out
