"""Scan once per run: the file index of a dataset, built by one process, loaded by every rank.

Listing and quick-verifying RP2K (2,388 class folders, 384k files) costs seconds of CPU; done by
every rank on every start it multiplies by the ranks and by every restart and resume, and on a
network file system it is minutes. Instead, one process per run directory builds the index
(the files of both splits, their labels, the files left out and why) and writes it into
``<run dir>/data-index/``; every rank maps the same file.

Who builds: the first rank to create the lock file ``<key>.lock`` (``O_CREAT|O_EXCL``), which it
does before joining the cluster. It starts the scan then (``ScanOnce.start``: a helper process
per core it was allowed before binding itself to its own cores, forked before MindSpore is
loaded) and collects it after joining (``build``), so listing and verifying overlap with
loading MindSpore and the cluster's rendezvous; the others wait for the index after joining
and map it. The election needs no rank number, so it works the same under ``wrn-launch``,
``msrun`` or by hand, with a run directory shared by several hosts (one of them scans) or
copied to each (one per host scans). The builder touches its lock every ``HEARTBEAT_S``; a
lock that has not changed for ``STALE_S``, or that names a process of this host that is gone,
belongs to a builder that died, and a waiter takes over. A builder that fails on bad data
raises ``DataError`` and the run ends with its message.

Reuse: the index file is named after the dataset's *stamp* (``tree_stamp``): the data
folder's real path, the verify mode, and for ``train/`` and ``test/`` the folder's
modification time, its class folders and each class folder's modification time. Adding,
removing or renaming a file changes its folder's time, so a changed tree gets a new index and
an unchanged one (a restart, ``--resume``) reuses the old one for the cost of about 5,000
``stat`` calls. Replacing a file's content in place is not seen: ``--rescan`` (the worker's
``--rescan TOKEN``) builds a new index whatever the stamp says, once per ``TOKEN``.

File format (one file; little-endian): ``MAGIC``, the header length (u64), the header (UTF-8
JSON: version, stamp, token, root, verify, classes, and per split its count, skipped files
and where its arrays lie), then per split ``labels`` (int32), ``offsets`` (int64, count + 1)
and the UTF-8 file names one after another. Ranks map it read-only, so on one host every
rank shares the same pages: the index costs each rank almost no private memory (see
BENCHMARKS.md), where a list of 384k path strings cost about 90 MB per rank.

Imports only numpy (and ``wrn.classindex``, ``wrn.scan``, ``wrn.splits``); MindSpore is not needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wrn.classindex import build_class_index
from wrn.fileio import write_atomic
from wrn.scan import ListingJob, SplitListing, scan_workers
from wrn.splits import Split

#: Folder of the run directory that holds index files.
INDEX_DIR = "data-index"
MAGIC = b"WRNIDX01"
FORMAT_VERSION = 1
#: The builder refreshes its lock this often; a lock unchanged for STALE_S is abandoned.
HEARTBEAT_S = 2.0
STALE_S = 60.0
#: Niceness of the scan's helper processes: they run while the host's ranks load MindSpore and
#: join, and should take the cores only when those wait (the rendezvous leaves them idle).
SCAN_NICE = 10
#: A waiter checks for the index at least this often: every rank that waits is on the critical
#: path to the first step (it was 0.5 s: up to that much lost). A check opens the index file
#: and reads the lock: a few metadata operations, tens per second per waiting rank on a
#: shared file system, for the seconds the scan takes.
WAIT_POLL_MAX_S = 0.1
SPLITS = ("train", "test")


# --------------------------------------------------------------------------- the stamp


def tree_stamp(root: str | os.PathLike, verify: str) -> tuple[list[str], str]:
    """``(classes, stamp)``: the training class index and a short hash that changes when a
    file is added to, removed from or renamed in any class folder of ``train/`` or ``test/``
    (their folder times), or the verify mode changes. ``DataError`` as ``build_class_index``."""
    root = Path(root).resolve()
    classes = build_class_index(root)
    parts: list = [FORMAT_VERSION, str(root), verify]
    for split in SPLITS:
        split_dir = root / split
        try:
            with os.scandir(split_dir) as it:
                entries = sorted((e.name, e.stat().st_mtime_ns) for e in it
                                 if e.is_dir() and not e.name.startswith("."))
            parts.append([split, split_dir.stat().st_mtime_ns, len(entries), entries])
        except OSError:
            parts.append([split, None])
    text = json.dumps(parts, ensure_ascii=True, separators=(",", ":"))
    return classes, hashlib.sha256(text.encode("ascii")).hexdigest()[:20]


def _root_key(root: Path, verify: str) -> str:
    return hashlib.sha256(f"{root}\0{verify}".encode("utf-8", "surrogateescape")).hexdigest()[:12]


# --------------------------------------------------------------------------- the file list


class FileList(Sequence[str]):
    """The absolute paths of a split's files, made on access from the mapped index:
    ``<split dir>/<class>/<name>``. Indexing with an int gives a str, with a slice a tuple."""

    def __init__(self, directory: str, classes: Sequence[str], labels: np.ndarray,
                 offsets: np.ndarray, names: np.ndarray) -> None:
        self._dirs = [os.path.join(directory, c) for c in classes]
        self._labels, self._offsets, self._names = labels, offsets, names

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return tuple(self[k] for k in range(*i.indices(len(self))))
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("FileList index out of range")
        name = self._names[self._offsets[i]:self._offsets[i + 1]].tobytes().decode("utf-8")
        return os.path.join(self._dirs[self._labels[i]], name)

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))


# --------------------------------------------------------------------------- the index


@dataclass(frozen=True)
class DataIndex:
    """The splits of a dataset as one index file holds them; ``built`` is True in the process
    that scanned (False where it was loaded), ``seconds`` how long the scan took."""

    path: Path
    stamp: str
    classes: tuple[str, ...]
    splits: dict[str, Split]
    built: bool
    seconds: float

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def test(self) -> Split:
        return self.splits["test"]


def _encode(root: Path, verify: str, stamp: str, token: str | None, classes: Sequence[str],
            listings: dict[str, SplitListing], seconds: float) -> bytes:
    """The index file's bytes for the splits ``listings`` (see the module doc)."""
    arrays: list[bytes] = []
    meta: dict[str, dict] = {}
    at = 0
    for name, listing in listings.items():
        base = listing.base.rstrip("/")
        names = [n.encode("utf-8") for _, _, folder in listing.folders for n in folder]
        labels = np.concatenate([np.full(len(folder), label, dtype="<i4")
                                 for label, _, folder in listing.folders])
        offsets = np.zeros(len(names) + 1, dtype="<i8")
        np.cumsum(np.fromiter(map(len, names), dtype="<i8", count=len(names)), out=offsets[1:])
        blobs = [labels.tobytes(), offsets.tobytes(), b"".join(names)]
        places = []
        for blob in blobs:
            places.append(at)
            arrays.append(blob + b"\0" * (-len(blob) % 8))
            at += len(arrays[-1])
        meta[name] = {"count": len(names), "labels_at": places[0], "offsets_at": places[1],
                      "names_at": places[2], "names_bytes": int(offsets[-1]), "directory": base,
                      "skipped": [[os.path.relpath(p, base), why] for p, why in listing.skipped]}
    header = json.dumps({"version": FORMAT_VERSION, "stamp": stamp, "token": token, "root": str(root),
                         "verify": verify, "classes": list(classes), "splits": meta,
                         "seconds": round(seconds, 3), "created": time.time()},
                        ensure_ascii=False).encode("utf-8")
    header += b" " * (-(len(MAGIC) + 8 + len(header)) % 8)
    return MAGIC + len(header).to_bytes(8, "little") + header + b"".join(arrays)


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of an index file; ``ValueError`` if it is not one."""
    with open(path, "rb") as fh:
        head = fh.read(len(MAGIC) + 8)
        if len(head) < len(MAGIC) + 8 or head[:len(MAGIC)] != MAGIC:
            raise ValueError(f"{path} is not a data index file")
        size = int.from_bytes(head[len(MAGIC):], "little")
        if size > 1 << 30:
            raise ValueError(f"{path}: data index header too large")
        header = json.loads(fh.read(size).decode("utf-8"))
    if not isinstance(header, dict) or header.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unknown data index version")
    header["_data_at"] = len(MAGIC) + 8 + size
    return header


def load_index(path: str | os.PathLike) -> DataIndex:
    """Map an index file read-only and return its splits (file lists made on access);
    ``ValueError`` naming the file if it is not a whole index (truncated, damaged)."""
    try:
        return _load(Path(path))
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        raise ValueError(f"{path} is not a usable data index ({type(exc).__name__}: {exc})") from None


def _load(path: Path) -> DataIndex:
    header = read_header(path)
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=header["_data_at"]) \
        if path.stat().st_size > header["_data_at"] else np.zeros(0, np.uint8)
    classes = tuple(header["classes"])
    splits = {}
    for name, m in header["splits"].items():
        n = int(m["count"])
        if m["names_at"] + int(m["names_bytes"]) > len(data) or n < 0:
            raise ValueError("the file is shorter than its header says")
        labels = data[m["labels_at"]:m["labels_at"] + 4 * n].view("<i4")
        offsets = data[m["offsets_at"]:m["offsets_at"] + 8 * (n + 1)].view("<i8")
        names = data[m["names_at"]:m["names_at"] + int(m["names_bytes"])]
        base = m["directory"]
        splits[name] = Split(files=FileList(base, classes, labels, offsets, names), labels=labels,
                             classes=classes, directory=base,
                             skipped=tuple((os.path.join(base, p), why) for p, why in m["skipped"]))
    return DataIndex(path, header["stamp"], classes, splits, False, float(header.get("seconds", 0)))


# --------------------------------------------------------------------------- scan once


class _Heartbeat:
    """Touches the lock file every HEARTBEAT_S while the builder works."""

    def __init__(self, lock: Path) -> None:
        self._lock, self._stop = lock, threading.Event()
        self._thread = threading.Thread(target=self._run, name="wrn-index-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self._lock)
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class ScanOnce:
    """One rank's part in building the index once: ``claim()``, then ``build()`` if it won,
    else ``wait()`` (which loads the index once it is there, or takes over an abandoned build).

    ``folder`` is where index files live (``<run dir>/data-index``); ``rescan`` a token: an
    index built for another token (or none) is not reused. ``log`` gets one line about what
    happened (built, reused, waited).
    """

    def __init__(self, root: str | os.PathLike, folder: str | os.PathLike, *, verify: str = "quick",
                 rescan: str | None = None, log: Callable[[str], None] | None = None) -> None:
        self.root = Path(root).resolve()
        self.folder = Path(folder)
        self.verify = verify
        self.rescan = rescan or None
        self.log = log or (lambda _msg: None)
        self.classes, self.stamp = tree_stamp(self.root, verify)
        key = _root_key(self.root, verify)
        self.path = self.folder / f"{key}-{self.stamp}.idx"
        self.lock = self.folder / f"{key}-{self.stamp}.lock"
        self._prefix = f"{key}-"
        self._held = False
        self._job: ListingJob | None = None
        self._beat: _Heartbeat | None = None
        # the cores this process may use now, before a worker binds itself to its own ones:
        # while the index is built the other ranks of the host only wait for it
        self.cpus = tuple(sorted(os.sched_getaffinity(0)))

    def ready(self) -> DataIndex | None:
        """The index for this stamp (and rescan token, if any) if a whole one is there."""
        try:
            header = read_header(self.path)
            if self.rescan is not None and header.get("token") != self.rescan:
                return None
            return load_index(self.path)
        except (OSError, ValueError):
            return None

    def claim(self) -> bool:
        """Try to become the builder: True if this process must build (it holds the lock and
        no usable index exists); False if the index is ready or another process builds it."""
        if self.ready():
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.uname().nodename} {os.getpid()}\n")
        if self.ready():  # finished by another process between our check and the lock
            self._release()
            return False
        self._held = True
        return True

    def _owner_gone(self) -> bool:
        """True when the lock names a process of this host that no longer exists."""
        try:
            host, pid = self.lock.read_text().split()
            if host != os.uname().nodename:
                return False
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except (OSError, ValueError):
            return False
        return False

    def _release(self) -> None:
        self._held = False
        try:
            os.unlink(self.lock)
        except OSError:
            pass

    def start(self) -> None:
        """Begin the scan on helper processes (after ``claim()`` won) and return: the caller
        joins its cluster meanwhile, and ``build()`` collects. Checks that open no file run
        here, so a missing split folder or an unknown class folder is a ``DataError`` before
        the caller has started anything. ``build()`` without ``start()`` scans there."""
        assert self._held, "start() without claim()"
        if self._job is not None:
            return
        try:  # the helpers are forked before the heartbeat thread starts
            self._job = ListingJob(self.root, SPLITS, self.classes, verify=self.verify,
                                   workers=scan_workers(self.cpus), cpus=self.cpus, nice=SCAN_NICE)
        except BaseException:
            self._finish()
            raise
        self._beat = _Heartbeat(self.lock)

    def build(self) -> DataIndex:
        """Scan both splits (on the usable cores; begun by ``start()`` if it was called), write
        the index atomically, release the lock and return the index as loaded from the file.
        ``DataError`` on unusable data."""
        self.start()
        try:
            splits = self._job.result()
            seconds, helpers = self._job.seconds, self._job.helper_count
            write_atomic(self.path, _encode(self.root, self.verify, self.stamp, self.rescan,
                                            self.classes, splits, seconds))
            del splits
            self._remove_others()
        finally:
            self._finish()
        index = load_index(self.path)
        where = f"{helpers} helper process(es)" if helpers else "this process"
        self.log(f"scanned {self.root} in {seconds:.1f} s on {where}: "
                 f"{len(index.train)} train, {len(index.test)} test images; index {self.path}")
        return DataIndex(index.path, index.stamp, index.classes, index.splits, True, seconds)

    def abandon(self) -> None:
        """Give the build up (after ``start()``, when the caller fails before ``build()``): stop
        the helpers and the heartbeat and release the lock, so that a waiter takes over. Does
        nothing in a process that does not hold the lock."""
        if self._held:
            self._finish()

    def _finish(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            job.close()
        if self._beat is not None:
            self._beat.stop()
            self._beat = None
        self._release()

    def _remove_others(self) -> None:
        """Delete this dataset's older index files (other stamps) from the folder."""
        for other in self.folder.glob(f"{self._prefix}*.idx"):
            if other != self.path:
                try:
                    other.unlink()
                except OSError:
                    pass

    def wait(self, poll: float = 0.05) -> DataIndex:
        """The index, once there: loaded; or built here when the lock is gone without an index
        (its builder failed) or has not changed for STALE_S (its builder died)."""
        seen, since = None, time.monotonic()
        waited = False
        while True:
            index = self.ready()
            if index is not None:
                self.log(f"{'waited for' if waited else 'reused'} the data index {self.path} "
                         f"({len(index.train)} train, {len(index.test)} test images)")
                return index
            try:
                st = os.stat(self.lock)
                state = (st.st_ino, st.st_mtime_ns)
            except FileNotFoundError:
                state = None
            if state is None or time.monotonic() - since > STALE_S or self._owner_gone():
                if state is not None:
                    self.log(f"the data index lock {self.lock} belongs to a builder that is gone "
                             f"(its process ended, or the lock has not changed for {STALE_S:g} s); "
                             f"scanning here")
                    try:
                        os.unlink(self.lock)
                    except OSError:
                        pass
                if self.claim():
                    return self.build()
                seen, since = None, time.monotonic()
                continue
            if state != seen:
                seen, since = state, time.monotonic()
            waited = True
            time.sleep(poll)
            poll = min(WAIT_POLL_MAX_S, poll * 1.5)


def obtain(root: str | os.PathLike, folder: str | os.PathLike, *, verify: str = "quick",
           rescan: str | None = None, log: Callable[[str], None] | None = None) -> DataIndex:
    """The index of ``root``: reused, built here, or waited for (``ScanOnce`` in one call)."""
    scan = ScanOnce(root, folder, verify=verify, rescan=rescan, log=log)
    return scan.build() if scan.claim() else scan.wait()
