"""The scan: list a split's image files and check them, on helper processes for large datasets.

``ListingJob`` starts the listing of one or more splits and collects it later, so a worker
can join its cluster while the helpers work; ``list_split`` is the same for one split, at
once. The result is a ``SplitListing`` per split: per class folder its label and the names of
its usable images, and the files left out with the reason. ``wrn.splits.scan_split`` makes a
``Split`` of it, ``wrn.dataindex`` writes it to the data index.

Import cost: the standard library and light ``wrn`` modules only, no numpy and no MindSpore:
a helper started once MindSpore is loaded is a fresh interpreter that imports this module.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from wrn.classindex import _validated_classes
from wrn.datapath import IMAGE_EXTENSIONS, DataError, _check_names_utf8, _is_hidden, _is_utf8
from wrn.images import _quick_check_folder, check_image_full

#: ``verify`` modes of ``scan_split``.
VERIFY_MODES = ("off", "quick", "full")
#: ``scan_split`` uses helper processes only for at least this many class folders (starting
#: them costs more than a small dataset's whole scan).
POOL_MIN_FOLDERS = 64


def _scan_folder(args: tuple[str, str]) -> tuple[list[str], list[tuple[str, str]], bool]:
    """One class folder: its image file names that pass ``verify`` (sorted), the
    ``(name, reason)`` of those that fail, and whether every name is valid UTF-8 (if not,
    nothing is verified: the caller reports the names). ``DataError`` if the folder cannot be
    listed. Runs in a helper process when ``ListingJob`` has them."""
    folder, verify = args
    try:
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it if e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file())
    except OSError as exc:
        raise DataError(f"cannot list {folder}: {exc.strerror or exc}") from None
    if not _all_utf8(names):
        return names, [], False
    if verify == "off":
        return names, [], True
    if verify == "quick":
        bad = _quick_check_folder(folder, names)
    else:
        bad = [(n, p) for n in names if (p := check_image_full(os.path.join(folder, n))) is not None]
    return _without(names, bad), bad, True


def _without(names: list[str], bad: list[tuple[str, str]]) -> list[str]:
    if not bad:
        return names
    failed = {n for n, _ in bad}
    return [n for n in names if n not in failed]


def _all_utf8(names: Sequence[str]) -> bool:
    return all(_is_utf8(n) for n in names)


def _start_helpers(workers: int, chunks: list[list[str]], verify: str,
                   cpus: Sequence[int] | None, nice: int) -> list:
    """Start ``workers`` processes; helper ``i`` scans chunks ``i, i + workers, ...`` of class
    folders and sends its ``_scan_folder`` results back over a pipe when done;
    ``[(process, connection), ...]``. No lock is shared, so a helper that dies cannot stop the
    others, and nothing of this process runs while they work: a worker's MindSpore ``init()``
    holds the GIL for seconds, which starved the feeding thread of a process pool.

    Before MindSpore is loaded the helpers are forked; once it is loaded (forking a process that
    runs its threads is not safe) they are spawned (a fresh interpreter that imports this
    module). Either way they are children of this process, so their death signal
    (``PR_SET_PDEATHSIG``) fires when it dies; a fork server would have outlived it, kept
    alive by the helpers themselves."""
    import multiprocessing
    import sys

    ctx = multiprocessing.get_context("spawn" if "mindspore" in sys.modules else "fork")
    helpers = []
    try:
        for i in range(workers):
            mine, theirs = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_scan_helper, name="wrn-scan",
                               args=(os.getpid(), chunks[i::workers], verify, theirs, cpus, nice),
                               daemon=True)
            proc.start()
            theirs.close()
            helpers.append((proc, mine))
    except BaseException:
        _stop_helpers(helpers)
        raise
    return helpers


def _scan_helper(starter: int, chunks: list[list[str]], verify: str, conn,
                 cpus: Sequence[int] | None, nice: int) -> None:
    """A helper process: ``_scan_folder`` of every folder of ``chunks``; sends
    ``("ok", finished, results)`` or ``("error", finished, message)``. It dies with the process
    that started it (``PR_SET_PDEATHSIG``), so a worker killed mid-scan leaves none, and ignores
    Ctrl-C (the worker it belongs to decides)."""
    import signal

    from wrn.lifetime import set_pdeathsig

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_pdeathsig(signal.SIGKILL)
    if os.getppid() != starter:  # it died before the prctl
        os._exit(1)
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
    except OSError:
        pass
    try:
        if nice:
            os.nice(nice)
    except OSError:
        pass
    try:
        results = [_scan_folder((folder, verify)) for chunk in chunks for folder in chunk]
        conn.send(("ok", time.monotonic(), results))
    except DataError as exc:
        conn.send(("error", time.monotonic(), str(exc)))
    finally:
        conn.close()


def _stop_helpers(helpers: list) -> None:
    for proc, conn in helpers:
        if proc.is_alive():
            proc.kill()
        proc.join()
        conn.close()


def _helper_died(proc) -> DataError:
    proc.join()
    code = proc.exitcode
    if code is not None and code < 0:
        import signal

        how = f"was killed by {signal.Signals(-code).name}" + (" (out of memory?)" if -code == 9 else "")
    else:
        how = f"ended with exit code {code}"
    return DataError(f"a helper process listing the data {how} before it sent its result; "
                     f"run again")


def scan_workers(cpus: Sequence[int] | None = None) -> int:
    """Processes ``scan_split`` may use: one per core of ``cpus`` (default: the cores this
    process may run on), at most 32."""
    return max(1, min(32, len(cpus or os.sched_getaffinity(0))))


@dataclass(frozen=True)
class SplitListing:
    """What ``list_split`` found: per class folder (in class order) its label, its path and
    the names of its usable images; the files left out (``(path, reason)``); the split folder
    as given (``directory``) and resolved (``base``, which the folder paths start with)."""

    directory: str
    base: str
    folders: tuple[tuple[int, str, list[str]], ...]
    skipped: tuple[tuple[str, str], ...]

    @property
    def count(self) -> int:
        return sum(len(names) for _, _, names in self.folders)


def list_split(root: str | os.PathLike, split: str, classes: Sequence[str], verify: str = "quick",
               workers: int = 1, cpus: Sequence[int] | None = None) -> SplitListing:
    """The usable images of ``root/<split>/<class>/`` folder by folder (see
    ``wrn.splits.scan_split``, which makes a ``Split`` of it, and ``wrn.dataindex``, which
    writes it without making a path string per file)."""
    return ListingJob(root, (split,), classes, verify=verify, workers=workers, cpus=cpus).result()[split]


class ListingJob:
    """``list_split`` of several splits, started now and collected by ``result()``.

    The checks that need no file opened (the split folders exist, their class folders are in
    ``classes`` and have UTF-8 names) run in the constructor and raise ``DataError`` there;
    file names are checked in ``result()``. With ``workers`` > 1 and at least
    ``POOL_MIN_FOLDERS`` class folders the folders go to ``workers`` helper processes at once
    (``nice``: their scheduling niceness), so the caller can do other work (a worker joins its
    cluster) while they list and verify; otherwise ``result()`` does the work.
    """

    def __init__(self, root: str | os.PathLike, splits: Sequence[str], classes: Sequence[str],
                 verify: str = "quick", workers: int = 1, cpus: Sequence[int] | None = None,
                 nice: int = 0) -> None:
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {', '.join(VERIFY_MODES)}; got {verify!r}")
        self.verify = verify
        classes = _validated_classes(classes, "scan_split")
        self._plans = {split: _plan_split(Path(root), split, classes) for split in splits}
        self._folders = [path for plan in self._plans.values() for path in plan.paths]
        #: seconds from the start of the listing to its last folder (helpers: from this
        #: constructor, whatever the caller did meanwhile; else the time ``result()`` took)
        self.seconds = 0.0
        self._created = time.monotonic()
        self._helpers: list = []
        self._chunks: list[list[str]] = []
        if workers > 1 and max(len(plan.paths) for plan in self._plans.values()) >= POOL_MIN_FOLDERS:
            size = max(1, len(self._folders) // (workers * 16))
            self._chunks = [self._folders[i:i + size] for i in range(0, len(self._folders), size)]
            self._helpers = _start_helpers(workers, self._chunks, verify, cpus, nice)
        #: how many helper processes do the work (0: ``result()`` does it in this process)
        self.helper_count = len(self._helpers)

    def result(self) -> dict[str, SplitListing]:
        """Every split's listing (waiting for the helpers). ``DataError`` as ``scan_split``,
        and as soon as a helper ends without its result."""
        try:
            if self._helpers:
                results = iter(self._collect())
            else:
                began = time.monotonic()
                results = self._scan_here()
                self.seconds = time.monotonic() - began
        finally:
            self.close()
        return {split: _listing(plan, [next(results) for _ in plan.paths], self.verify)
                for split, plan in self._plans.items()}

    def _collect(self) -> list:
        """The helpers' results in folder order; waits on their pipes and their ends at once."""
        from multiprocessing.connection import wait

        workers = len(self._helpers)
        got: dict[int, list] = {}
        last = self._created
        pending = {conn: (i, proc) for i, (proc, conn) in enumerate(self._helpers)}
        while pending:
            ready = wait(list(pending) + [proc.sentinel for _, proc in pending.values()])
            for conn in [c for c in pending if c in ready or pending[c][1].sentinel in ready]:
                i, proc = pending[conn]
                if conn not in ready and not conn.poll():
                    raise _helper_died(proc)
                try:
                    status, finished, payload = conn.recv()
                except EOFError:
                    raise _helper_died(proc) from None
                if status != "ok":
                    raise DataError(payload)
                got[i] = payload
                last = max(last, finished)
                del pending[conn]
        self.seconds = last - self._created
        # helper i holds chunks i, i + workers, ...: put the folders back in order
        per_chunk: list[list] = [[] for _ in self._chunks]
        for i, results in got.items():
            at = iter(results)
            for k in range(i, len(self._chunks), workers):
                per_chunk[k] = [next(at) for _ in self._chunks[k]]
        return [r for chunk in per_chunk for r in chunk]

    def _scan_here(self) -> Iterator:
        if self.verify != "full":
            return iter([_scan_folder((f, self.verify)) for f in self._folders])
        # full: list every folder, then decode the files in chunks on a thread per core
        # (Pillow releases the GIL), however few folders there are
        listed = [_scan_folder((f, "off")) for f in self._folders]
        files = [(k, name) for k, (names, _, utf8) in enumerate(listed) if utf8 for name in names]
        paths = [os.path.join(self._folders[k], name) for k, name in files]
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            problems = list(pool.map(check_image_full, paths, chunksize=64))
        bad: list[list[tuple[str, str]]] = [[] for _ in listed]
        for (k, name), problem in zip(files, problems):
            if problem is not None:
                bad[k].append((name, problem))
        return iter([(_without(names, bad[k]), bad[k], utf8) if utf8 else (names, [], utf8)
                     for k, (names, _, utf8) in enumerate(listed)])

    def close(self) -> None:
        """Stop the helpers (work not sent back yet is dropped)."""
        helpers, self._helpers = self._helpers, []
        _stop_helpers(helpers)


class _SplitPlan(NamedTuple):
    directory: Path  # the split folder as given
    base: str  # ... resolved
    names: list[str]  # its class folders, in class order
    paths: list[str]  # ... under ``base``
    index: dict[str, int]  # class name -> label


def _plan_split(root: Path, split: str, classes: list[str]) -> _SplitPlan:
    """The class folders of ``root/split`` in class order; ``DataError`` if the folder is
    missing or names a class that is not in ``classes``."""
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} does not exist; expected {split_dir}/<class>/<image>.jpg")
    index = {name: i for i, name in enumerate(classes)}
    with os.scandir(split_dir) as it:
        folders = sorted(e.name for e in it if e.is_dir() and not _is_hidden(e.name))
    _check_names_utf8(split_dir, folders)
    unknown = [name for name in folders if name not in index]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise DataError(f"{split_dir} has class folder(s) that are not in the training class index "
                        f"({len(classes)} classes, taken from train/): {shown}; every {split} class "
                        f"must also exist in train/")
    base = str(split_dir.resolve())
    ordered = sorted(folders, key=index.__getitem__)
    return _SplitPlan(split_dir, base, ordered, [os.path.join(base, name) for name in ordered], index)


def _listing(plan: _SplitPlan, results: list, verify: str) -> SplitListing:
    """The ``SplitListing`` of a planned split from its folders' ``_scan_folder`` results."""
    split_dir, index = plan.directory, plan.index
    found, skipped = [], []
    for name, path, (names, bad, utf8) in zip(plan.names, plan.paths, results):
        if not utf8:
            _check_names_utf8(Path(path), names)
        found.append((index[name], path, names))
        skipped.extend((os.path.join(path, n), why) for n, why in bad)
    listing = SplitListing(directory=str(split_dir), base=plan.base, folders=tuple(found),
                           skipped=tuple(skipped))
    if not listing.count:
        what = f" ({len(skipped)} image file(s) failed the {verify} check)" if skipped else ""
        raise DataError(f"{split_dir} holds no usable images{what}; expected "
                        f"{split_dir}/<class>/<image>.jpg|.jpeg|.png")
    return listing
