"""Class index files for predict: which class name each label number is.

``read_class_index`` reads the ``classes.json`` of a training run (a JSON list of names), a
JSON ``{name: index}``, a text file with one class name per line, or ModelZoo's
``imagenet_label.json`` (``{image file name: label number}``, names only as numbers) into a
``ClassIndex``.

``PredictError``, the error of every predict module (``wrn.imagefiles``, ``wrn.inference``,
``wrn.predict``, which re-exports it), is defined here, the lowest of them.

Import cost: the standard library and light ``wrn`` modules only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from wrn.config import ConfigError
from wrn.datapath import IMAGE_EXTENSIONS


class PredictError(ConfigError):
    """Input that cannot be scored as asked; ``str()`` is one paragraph (what, and the fix)."""


@dataclass(frozen=True)
class ClassIndex:
    """The class names, whose position is the label, and where they came from.

    ``names`` is None for a ModelZoo label file (``{"image.jpg": 3, ...}``), which has label
    numbers only: the names are then the numbers ("0", "1", ...) up to the model's class count
    (``with_count``), and ``by_file`` gives each image file name its label.
    """

    names: tuple[str, ...] | None
    source: str
    by_file: Mapping[str, int] | None = None

    def with_count(self, count: int) -> ClassIndex:
        """Numbered names for a label file without names; the index itself otherwise."""
        if self.names is not None:
            return self
        top = max(self.by_file.values(), default=-1) if self.by_file else -1
        if top >= count:
            raise PredictError(f"--classes {self.source}: labels go up to {top} but the model has "
                               f"{count} classes; pass the label file made for this model's dataset")
        return ClassIndex(tuple(str(i) for i in range(count)), self.source, self.by_file)


def read_class_index(path: str | os.PathLike) -> ClassIndex:
    """Read a class index: ``classes.json`` (a JSON list of names), a JSON ``{name: index}``,
    a text file with one class name per line, or ModelZoo's ``imagenet_label.json``
    (``{image file name: label number}``). ``PredictError`` if it is none of these."""
    from wrn.classindex import _validated_classes

    path = Path(path)
    how = ("pass the classes.json of the training run (RUN_DIR/classes.json), a JSON list of "
           "class names, or a text file with one class name per line")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PredictError(f"--classes {path}: cannot be read ({exc.strerror or exc}); {how}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PredictError(f"--classes {path} is not UTF-8 text; {how}") from None
    suffix = path.suffix.lower()
    if suffix not in (".json", ".txt", ""):
        raise PredictError(f"--classes {path}: unknown class index format {path.suffix!r}; {how}")
    if suffix == ".json" or (not suffix and text.lstrip()[:1] in ("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PredictError(f"--classes {path}: not valid JSON ({exc.msg}, line {exc.lineno}); "
                               f"{how}") from None
        if isinstance(data, dict):
            return _index_from_mapping(data, path, how)
        names = data
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    try:
        return ClassIndex(tuple(_validated_classes(names, f"--classes {path}")), str(path))
    except ValueError as exc:
        raise PredictError(f"{exc}; {how}") from None


def _index_from_mapping(data: dict, path: Path, how: str) -> ClassIndex:
    """A JSON object as a class index: ``{name: index}`` (indices 0..n-1, each once), or
    ModelZoo's ``{image file name: label}`` (every key an image file name)."""
    values = list(data.values())
    if not data or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise PredictError(f"--classes {path}: a JSON object must map class names (or image file "
                           f"names) to label numbers 0, 1, ...; {how}")
    if all(k.lower().endswith(IMAGE_EXTENSIONS) for k in data):
        return ClassIndex(None, str(path), dict(data))
    if sorted(values) != list(range(len(values))):
        raise PredictError(f"--classes {path}: the label numbers must be 0..{len(values) - 1}, each "
                           f"once; {how}")
    return ClassIndex(tuple(sorted(data, key=data.__getitem__)), str(path))
