"""Writing files so that a reader never sees half of one: the project's one atomic writer.

Every file that someone may read while it is being replaced (run.json, config.yaml, latest.json,
classes.json, rank tables, reports) is written to a temporary name in the same folder and renamed
over the target (``os.replace`` is atomic on POSIX file systems). A failed write leaves the old
file as it was and no temporary file behind. ``fsync=True`` also flushes the data (and the
folder entry) to disk before returning, for files that must survive a power cut.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def fsync_dir(directory: str | os.PathLike) -> None:
    """Sync a folder's entries (a rename into it) to disk; a folder that cannot be opened or
    synced (some file systems refuse) is left as it is."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def expand_user(path: str | os.PathLike) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded; an unknown user's ``~name`` is left
    as written (``Path.expanduser`` raises RuntimeError there), so it reads as a missing path
    and gets that path's own error."""
    return Path(os.path.expanduser(os.fspath(path)))


def write_atomic(path: str | os.PathLike, data: str | bytes, *, fsync: bool = False) -> Path:
    """Replace ``path`` with ``data`` (text is written as UTF-8) atomically; returns the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    if fsync:
        fsync_dir(path.parent)
    return path


def write_json_atomic(path: str | os.PathLike, data: Any, *, indent: int | None = 2,
                      fsync: bool = False) -> Path:
    """``write_atomic`` of ``data`` as JSON (UTF-8, not ASCII-escaped, newline at the end)."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n"
    return write_atomic(path, text, fsync=fsync)
