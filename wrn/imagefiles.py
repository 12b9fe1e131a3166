"""The images predict scores: files and folders given on the command line -> ``ImageSet``.

Folders are searched recursively (hidden files and folders left out; ``.jpg .jpeg .png`` in
any letter case). A folder whose sub-folders are all class names of the index is a labelled
split (``labelled_split``): its images get those labels. With ModelZoo's label file an image's
file name picks its label. Files that are not images, and folders that cannot be listed, are
listed with the reason (``ImageSet.skipped``), never fatal.

Import cost: the standard library and light ``wrn`` modules only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wrn.datapath import IMAGE_EXTENSIONS
from wrn.labelfiles import ClassIndex, PredictError

_NOT_IMAGE = "not a .jpg/.jpeg/.png file"


@dataclass(frozen=True)
class ImageSet:
    """The images to score, in order, with their labels (-1: none known); the files found
    that are not images (``(path, reason)``); the folders taken as labelled splits; notes."""

    files: tuple[str, ...]
    labels: tuple[int, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    labelled: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def labelled_split(folder: str | os.PathLike, names: Sequence[str]) -> bool:
    """True when ``folder`` has sub-folders (not hidden) and every one is a class name."""
    known = set(names)
    subs = _subfolders(folder)
    return bool(subs) and all(s in known for s in subs)


def _subfolders(folder: str | os.PathLike) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []


def find_images(paths: Sequence[str | os.PathLike], classes: ClassIndex | None = None) -> ImageSet:
    """The images named by ``paths`` (files, or folders searched recursively; hidden files and
    folders are left out), each file once, in the order given (a folder's files sorted by path).

    Labels: a folder whose sub-folders are all names of ``classes`` is a labelled split (its
    images below ``<class>/`` get that class); with a ModelZoo label file, a file's name picks
    its label. Files that are not ``.jpg/.jpeg/.png`` are returned in ``skipped``.
    ``PredictError`` for a path that does not exist or when no image is found at all.
    """
    names = classes.names if classes is not None else None
    by_file = classes.by_file if classes is not None else None
    index = {n: i for i, n in enumerate(names)} if names else {}
    files: list[str] = []
    labels: list[int] = []
    skipped: list[tuple[str, str]] = []
    labelled: list[str] = []
    notes: list[str] = []
    seen: set[str] = set()

    def add(path: str, label: int) -> None:
        key = os.path.abspath(path)
        if key in seen:
            return
        seen.add(key)
        if not is_image_name(path):
            skipped.append((path, _NOT_IMAGE))
            return
        if label < 0 and by_file is not None:
            label = by_file.get(os.path.basename(path), -1)
        files.append(path)
        labels.append(label)

    for given in paths:
        path = os.fspath(given)
        if os.path.isfile(path):
            add(path, -1)
        elif os.path.isdir(path):
            subs = _subfolders(path)
            is_split = bool(index) and bool(subs) and all(s in index for s in subs)
            if is_split:
                labelled.append(path)
            elif index and any(s in index for s in subs):
                strange = [s for s in subs if s not in index]
                notes.append(f"{path} is not taken as a labelled split (no accuracy): its "
                             f"sub-folder(s) {', '.join(repr(s) for s in strange[:3])}"
                             f"{' ...' if len(strange) > 3 else ''} are not classes of "
                             f"{classes.source}")
            for file, top in _walk(path, skipped):
                add(file, index.get(top, -1) if is_split and top is not None else -1)
        elif os.path.lexists(path):
            skipped.append((path, "not a file or folder"))
        else:
            raise PredictError(f"IMAGES: {path} does not exist; pass image files (.jpg, .jpeg, "
                               f".png) or folders that hold them")
    if by_file is not None:
        _check_unique_names(files, classes.source)
    if not files:
        shown = ", ".join(os.fspath(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
        other = f" (only {len(skipped)} other file(s), e.g. {skipped[0][0]})" if skipped else ""
        raise PredictError(f"IMAGES: no .jpg, .jpeg or .png image in {shown}{other}; pass image "
                           f"files or folders that hold them (searched recursively)")
    return ImageSet(tuple(files), tuple(labels), tuple(skipped), tuple(labelled), tuple(notes))


def _check_unique_names(files: Sequence[str], source: str) -> None:
    """A ModelZoo label file names images by file name alone: two images of one name (in two
    class folders, say) would both get the label of that one name."""
    first: dict[str, str] = {}
    for path in files:
        name = os.path.basename(path)
        if name in first:
            raise PredictError(f"--classes {source} labels images by file name, but {first[name]} and "
                               f"{path} have the same name, so their labels are ambiguous; pass the "
                               f"run's classes.json instead (a labelled split's class folders then "
                               f"give the labels)")
        first[name] = path


def _walk(top: str, skipped: list[tuple[str, str]]) -> Iterable[tuple[str, str | None]]:
    """``(file path, first folder below top or None)`` of every file under ``top``, sorted,
    hidden entries left out; folders that cannot be listed go to ``skipped``."""
    def failed(exc: OSError) -> None:
        skipped.append((exc.filename or top, f"cannot be listed: {exc.strerror or exc}"))

    for folder, dirs, names in os.walk(top, onerror=failed):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, top)
        first = None if rel == "." else rel.split(os.sep)[0]
        for name in sorted(n for n in names if not n.startswith(".")):
            yield os.path.join(folder, name), first
