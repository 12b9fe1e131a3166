"""MindInsight summary records (training curves) written by the worker into the run directory.

MindSpore's own writer, ``mindspore.train.summary.SummaryRecord``, works on CPU in 2.10, but
it starts a writer process plus a process pool (forked from the training process after the
runtime and the collective-communication threads are up), and the writer process polls its
queue in a loop without sleeping, which keeps one core busy for the whole run: on a small CPU
host that costs a worker's share of the machine. So this module writes the same files itself,
in the training process, with the standard library only (MindSpore is not even imported; the
protobuf encoding is ``wrn.protowire``'s):

* file name as MindSpore makes it: ``events.out.events.summary.<unix time>.<rank>.<host>_MS``
  in ``<run dir>/<summary_base_dir>`` (a relative summary_base_dir is taken inside the run
  directory; an absolute one gets a ``<run dir name>`` folder), so ``mindinsight start
  --summary-base-dir RUN_DIR/summary`` finds it;
* records framed as MindSpore's ``EventWriter`` frames them: 8-byte little-endian length,
  masked CRC-32C of the length, the serialized ``mindspore.irpb.Event``, masked CRC-32C of it;
* the first record holds ``version: "MindSpore.Event:1"``; each later one ``wall_time``,
  ``step`` and a ``Summary`` of scalar values (tag + float), exactly the protobuf MindSpore's
  ``summary.proto`` defines (``tests/test_summary.py`` checks both against MindSpore itself).

Only rank 0 writes (the replicas are identical in data-parallel training); ``open_summary``
gives every other rank a ``NullSummary`` that does nothing.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

from wrn import contract, protowire

VERSION_MARK = "MindSpore.Event:1"
FILE_MARK = ".out.events.summary."
#: Scalars written for each event kind: event field -> summary tag.
EVENT_TAGS = {
    "step": {"loss": "loss", "lr": "lr", "imgs_per_s": "imgs_per_s"},
    "epoch_end": {"loss": "epoch_loss", "imgs_per_s": "epoch_imgs_per_s", "seconds": "epoch_seconds"},
    "eval": {"top1": "eval_top1", "loss": "eval_loss"},
}


# -- CRC-32C (Castagnoli), masked as TFRecord/MindSpore do -------------------------------------------
def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """The masked CRC stored in each record header and trailer."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def frame(payload: bytes) -> bytes:
    """One record: length, masked CRC of the length, payload, masked CRC of the payload."""
    head = struct.pack("<Q", len(payload))
    return head + struct.pack("<I", masked_crc(head)) + payload + struct.pack("<I", masked_crc(payload))


# -- the protobuf messages, by hand (summary.proto: Event, Summary, Summary.Value) ------------------
def encode_version_event(wall_time: float) -> bytes:
    """``Event{wall_time, version: "MindSpore.Event:1"}``: the first record of a file."""
    return protowire.double_field(1, wall_time) + protowire.bytes_field(3, VERSION_MARK.encode())


def encode_scalars_event(wall_time: float, step: int, values: dict[str, float]) -> bytes:
    """``Event{wall_time, step, summary{value[{tag, scalar_value}]}}``."""
    summary = b"".join(  # Summary.value: [Value{tag, scalar_value}]
        protowire.bytes_field(1, protowire.bytes_field(1, tag.encode("utf-8"))
                              + protowire.float_field(3, value))
        for tag, value in values.items())
    return (protowire.double_field(1, wall_time) + protowire.varint_field(2, int(step))
            + protowire.bytes_field(5, summary))


# -- writing -----------------------------------------------------------------------------------------
def summary_dir(output_dir: str | os.PathLike, summary_base_dir: str) -> Path:
    """Where a run's summary files go: ``output_dir/summary_base_dir`` for a relative base,
    ``summary_base_dir/<output_dir name>`` for an absolute one."""
    base = Path(summary_base_dir).expanduser()
    if base.is_absolute():
        return base / Path(output_dir).resolve().name
    return Path(output_dir) / base


def _scalar(value: Any) -> float | None:
    """``value`` as a finite float, or None: ``wrn.contract.number`` of it, after turning a numeric
    string or a numpy scalar into a float (``SummaryLog.scalars`` takes those too)."""
    if isinstance(value, (str, bytes)) or hasattr(value, "item"):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
    return contract.number(value)


class SummaryLog:
    """One summary file being written: ``scalars(step, loss=..., lr=...)`` appends a record,
    ``on_event(kind, **fields)`` turns a worker event into one, ``close()`` ends the file.
    Writes are flushed at once (a record is a few dozen bytes, a few per epoch)."""

    def __init__(self, directory: str | os.PathLike, rank: int = 0, host: str | None = None,
                 now: float | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        now = time.time() if now is None else now
        host = host or socket.gethostname()
        stamp = int(now)
        while True:  # a new file per process, even for two attempts within one second
            self.path = self.directory / f"events{FILE_MARK}{stamp}.{rank}.{host}_MS"
            try:
                self._fh = open(self.path, "xb")
                break
            except FileExistsError:
                stamp += 1
        self._last_step = 0
        self._write(encode_version_event(now))

    def _write(self, payload: bytes) -> None:
        self._fh.write(frame(payload))
        self._fh.flush()

    def scalars(self, step: int, wall_time: float | None = None, **values: Any) -> None:
        """Record the finite numbers among ``values`` (tag=value) at global step ``step``."""
        clean = {tag: v for tag, v in ((t, _scalar(x)) for t, x in values.items()) if v is not None}
        if not clean or self._fh.closed:
            return
        self._last_step = max(self._last_step, int(step))
        self._write(encode_scalars_event(time.time() if wall_time is None else wall_time, int(step), clean))

    def on_event(self, kind: str, **fields: Any) -> None:
        """Record the scalars of a worker event (the fields of a ``wrn.contract`` event):
        step -> loss, lr, imgs_per_s; epoch_end -> epoch_loss, epoch_imgs_per_s,
        epoch_seconds; eval -> eval_top1, eval_loss. Events without a ``global_step`` are
        recorded at the last step seen."""
        tags = EVENT_TAGS.get(kind)
        if not tags:
            return
        step = fields.get("global_step")
        step = step if isinstance(step, int) else self._last_step
        self.scalars(step, **{tag: fields.get(name) for name, tag in tags.items()})

    def flush(self) -> None:
        if not self._fh.closed:
            self._fh.flush()

    def close(self) -> None:
        """Flush and close the file (again: nothing)."""
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> SummaryLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class NullSummary:
    """The summary of a rank that records nothing (every rank but 0, or summaries turned off)."""

    path = None

    def scalars(self, step: int, wall_time: float | None = None, **values: Any) -> None:
        """Nothing."""

    def on_event(self, kind: str, **fields: Any) -> None:
        """Nothing."""

    def flush(self) -> None:
        """Nothing."""

    def close(self) -> None:
        """Nothing."""

    def __enter__(self) -> NullSummary:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def open_summary(output_dir: str | os.PathLike, summary_base_dir: str | None, rank: int,
                 host: str | None = None) -> SummaryLog | NullSummary:
    """The summary writer of this rank: a ``SummaryLog`` in ``summary_dir(...)`` on rank 0,
    a ``NullSummary`` elsewhere or when ``summary_base_dir`` is empty. A directory that cannot
    be created turns summaries off rather than failing the training."""
    if rank != 0 or not summary_base_dir:
        return NullSummary()
    try:
        return SummaryLog(summary_dir(output_dir, summary_base_dir), rank=rank, host=host)
    except OSError:
        return NullSummary()


# -- reading (tests, and anyone who wants the numbers back without MindInsight) ----------------------
def read_records(path: str | os.PathLike) -> list[bytes]:
    """The payloads of a summary file, every CRC checked (``ValueError`` when one is wrong)."""
    data = Path(path).read_bytes()
    out, pos = [], 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError(f"{path}: truncated record header at byte {pos}")
        head = data[pos:pos + 8]
        (size,), (head_crc,) = struct.unpack("<Q", head), struct.unpack("<I", data[pos + 8:pos + 12])
        if head_crc != masked_crc(head):
            raise ValueError(f"{path}: bad length checksum at byte {pos}")
        payload = data[pos + 12:pos + 12 + size]
        trailer = data[pos + 12 + size:pos + 16 + size]
        if len(payload) != size or len(trailer) != 4 or struct.unpack("<I", trailer)[0] != masked_crc(payload):
            raise ValueError(f"{path}: bad or truncated record at byte {pos}")
        out.append(payload)
        pos += 16 + size
    return out


def read_summary(path: str | os.PathLike) -> tuple[str | None, list[tuple[int, float, dict[str, float]]]]:
    """(version string, [(step, wall_time, {tag: value})]) of a summary file."""
    version, records = None, []
    for payload in read_records(path):
        step, wall, values = 0, 0.0, {}
        for number, _wire, value in protowire.iter_fields(payload):
            if number == 1:
                wall = struct.unpack("<d", value)[0]
            elif number == 2:
                step = value
            elif number == 3:
                version = value.decode("utf-8")
            elif number == 5:
                for vnum, _w, vdata in protowire.iter_fields(value):
                    if vnum != 1:
                        continue
                    tag, scalar = None, None
                    for fnum, _w2, fval in protowire.iter_fields(vdata):
                        if fnum == 1:
                            tag = fval.decode("utf-8")
                        elif fnum == 3:
                            scalar = struct.unpack("<f", fval)[0]
                    if tag is not None and scalar is not None:
                        values[tag] = scalar
        if values:
            records.append((step, wall, values))
    return version, records
