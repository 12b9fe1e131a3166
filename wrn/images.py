"""Image file checks: is a file a whole JPEG or PNG image?

``check_image_quick`` reads only a file's head and tail (the magic bytes and the end marker);
``check_image_bytes`` is the same check of a file already read; ``check_image_full`` also
decodes it with Pillow. The scan (``wrn.scan``) runs them on every file it lists, in its helper
processes.

Import cost: the standard library only; Pillow is imported by ``check_image_full`` when it runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

#: Files smaller than this cannot be a real JPEG or PNG image.
MIN_IMAGE_BYTES = 64
#: How many bytes at the end of a file the quick check searches for the end marker.
TAIL_BYTES = 4096

_JPEG_SOI = b"\xff\xd8\xff"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND"


def check_image_quick(path: str | os.PathLike, dir_fd: int | None = None) -> str | None:
    """Structural check without decoding: None if ``path`` looks like a whole JPEG or PNG.

    Reads only the first 16 and last ``TAIL_BYTES`` bytes: a JPEG must start with FF D8 FF and
    have an FF D9 end marker in its tail; a PNG must have the 8-byte signature and an ``IEND``
    chunk in its tail. The format is taken from the content, not the file name. Returns the
    reason otherwise (too small, truncated, unknown format, unreadable). ``dir_fd``: ``path``
    is relative to that open folder (as ``os.open``).
    """
    try:
        fd = os.open(path, os.O_RDONLY, dir_fd=dir_fd)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if size < MIN_IMAGE_BYTES:
            return _size_problem(size)
        head = os.pread(fd, 16, 0)
        tail = os.pread(fd, TAIL_BYTES, max(0, size - TAIL_BYTES))
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    finally:
        os.close(fd)
    return _content_problem(head, tail)


def check_image_bytes(data: bytes) -> str | None:
    """``check_image_quick`` of a file already read whole: the same verdict on its bytes
    (``wrn.predict`` reads each file once, for this check and for decoding)."""
    if len(data) < MIN_IMAGE_BYTES:
        return _size_problem(len(data))
    return _content_problem(data[:16], data[-TAIL_BYTES:])


def _size_problem(size: int) -> str:
    return "empty file" if size == 0 else f"too small to be an image ({size} bytes)"


def _content_problem(head: bytes, tail: bytes) -> str | None:
    """The quick check's verdict on a file's first 16 and last ``TAIL_BYTES`` bytes."""
    if head.startswith(_JPEG_SOI):
        return None if _JPEG_EOI in tail else "truncated JPEG (no end-of-image marker)"
    if head.startswith(_PNG_SIGNATURE):
        return None if _PNG_IEND in tail else "truncated PNG (no IEND chunk)"
    return "not a JPEG or PNG file"


def _quick_check_folder(folder: str, names: Sequence[str]) -> list[tuple[str, str]]:
    """``check_image_quick`` over the files ``names`` of ``folder``: the ``(name, reason)`` of
    those that fail. Opens each file relative to the open folder, and a file that passes costs
    five system calls and no Python call: half the time of ``check_image_quick`` per path on
    RP2K's 384k files (BENCHMARKS.md), where the kernel would walk the whole path each time."""
    bad: list[tuple[str, str]] = []
    op, seek, pread, close = os.open, os.lseek, os.pread, os.close
    try:
        dfd = op(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        return [(name, f"unreadable: {exc.strerror}") for name in names]
    try:
        for name in names:
            try:
                fd = op(name, os.O_RDONLY, dir_fd=dfd)
            except OSError:
                bad.append((name, check_image_quick(name, dir_fd=dfd) or "unreadable"))
                continue
            try:
                size = seek(fd, 0, 2)
                head = pread(fd, 16, 0) if size >= MIN_IMAGE_BYTES else b""
                tail = pread(fd, TAIL_BYTES, max(0, size - TAIL_BYTES)) if head else b""
            except OSError:
                head = b""
            finally:
                close(fd)
            if head and ((head.startswith(_JPEG_SOI) and _JPEG_EOI in tail)
                         or (head.startswith(_PNG_SIGNATURE) and _PNG_IEND in tail)):
                continue
            # the rare failure: ask the whole check again for its reason
            bad.append((name, check_image_quick(name, dir_fd=dfd) or "changed while checked"))
    finally:
        close(dfd)
    return bad


def check_image_full(path: str | os.PathLike) -> str | None:
    """``check_image_quick`` plus a full decode with Pillow; None if the image is usable."""
    problem = check_image_quick(path)
    if problem:
        return problem
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        return f"cannot be decoded: {str(exc) or type(exc).__name__}"
    return None
