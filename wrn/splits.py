"""A split's usable images and their labels (``Split``), and ``scan_split``, which makes one.

``scan_split`` lists a split with ``wrn.scan`` and labels its files with the class index;
``wrn.dataindex`` makes the same ``Split`` from the data index that a run writes once.

Import cost: numpy; MindSpore is not needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wrn.scan import list_split


@dataclass(frozen=True, eq=False)
class Split:
    """The usable images of one split, in a fixed order.

    ``files`` are absolute paths sorted by class index, then by file name (a tuple, or the
    ``wrn.dataindex.FileList`` of a mapped index); ``labels[i]`` is the
    class index (int32) of ``files[i]``; ``classes`` is the class index used (the training
    one); ``skipped`` lists ``(path, reason)`` for image files left out because they failed
    verification; ``directory`` is the split folder.
    """

    files: Sequence[str]
    labels: np.ndarray
    classes: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    directory: str = ""

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.int32).reshape(-1)
        if labels.flags.writeable:  # a copy of what was given; a mapped index stays shared
            labels = labels.copy()
            labels.setflags(write=False)
        object.__setattr__(self, "labels", labels)
        if isinstance(self.files, (list, tuple)):
            object.__setattr__(self, "files", tuple(self.files))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "skipped", tuple(tuple(s) for s in self.skipped))
        if len(self.files) != len(labels):
            raise ValueError(f"Split: {len(self.files)} files but {len(labels)} labels")
        if len(labels) and not (labels.min() >= 0 and labels.max() < len(self.classes)):
            raise ValueError("Split: labels must lie in 0..len(classes)-1")

    def __len__(self) -> int:
        return len(self.files)

    def skip_message(self, limit: int = 5) -> str | None:
        """One warning line about the skipped files (first ``limit`` named), or None if none."""
        if not self.skipped:
            return None
        shown = "; ".join(f"{p} ({why})" for p, why in self.skipped[:limit])
        more = f"; and {len(self.skipped) - limit} more" if len(self.skipped) > limit else ""
        where = f" in {self.directory}" if self.directory else ""
        return (f"skipped {len(self.skipped)} unreadable image file(s){where}, using {len(self.files)}: "
                f"{shown}{more}")


def scan_split(root: str | os.PathLike, split: str, classes: Sequence[str], verify: str = "quick",
               workers: int = 1, cpus: Sequence[int] | None = None) -> Split:
    """List the images of ``root/<split>/<class>/`` and label them with the class index ``classes``.

    Image files are ``.jpg .jpeg .png`` in any letter case; other files, hidden folders and
    files directly in the split folder are ignored. Order: by class index, then by file name.
    ``verify``: ``"off"`` checks nothing, ``"quick"`` reads each file's head and tail
    (``check_image_quick``), ``"full"`` also decodes it with Pillow. Files that fail are left
    out and returned in ``Split.skipped`` (report them once, e.g. ``split.skip_message()``);
    they are never fatal. Raises ``DataError`` if the split folder is missing, if it has a
    class folder that is not in ``classes`` (the training class index), or if it holds no
    usable image. ``workers`` > 1: that many helper processes (for >= ``POOL_MIN_FOLDERS``
    class folders), allowed on ``cpus``.
    """
    listing = list_split(root, split, classes, verify=verify, workers=workers, cpus=cpus)
    files = [os.path.join(path, n) for _, path, names in listing.folders for n in names]
    labels = np.concatenate([np.full(len(names), label, dtype=np.int32)
                             for label, _, names in listing.folders])
    return Split(files=tuple(files), labels=labels, classes=tuple(classes),
                 skipped=listing.skipped, directory=listing.directory)
