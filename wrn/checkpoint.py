"""Checkpoints that survive crashes: write to a temporary name, fsync, rename, verify on load.

MindSpore's ``save_checkpoint`` deletes an existing file of the same name before writing, so a
crash mid-save can leave no checkpoint at all; and a truncated file can load "successfully"
with parameters missing (only ``load_param_into_net``'s not-loaded list reveals it). Here every
file is complete before it gets its final name, the newest one is recorded in
``latest.json`` only after it exists, and loading checks that every parameter was restored.

A checkpoint holds the network parameters, the optimizer state (momentum and the optimizer's
``global_step``, i.e. the position in the LR schedule) and metadata: epoch, step, global_step,
world_size, seed and a hash of the config fields that change the maths.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import zlib
from pathlib import Path
from typing import Any

from wrn import protowire
from wrn.fileio import fsync_dir, write_json_atomic

#: Config fields whose change makes a checkpoint's continuation a different experiment.
MATH_FIELDS = ("model", "num_classes", "image_size", "dropout", "batch_size", "epoch_size", "lr",
               "lr_schedule", "warmup_epochs", "lr_end", "lr_decay_epochs", "lr_decay_factor",
               "momentum", "nesterov", "weight_decay", "label_smoothing", "amp_level", "seed",
               "crop_min_scale")

META_KEYS = ("epoch", "step", "global_step", "world_size", "seed", "steps_per_epoch")
#: Parameters recomputed from the config rather than restored: the per-step LR array's length
#: depends on the world size (steps per epoch); the position in it is global_step.
DERIVED = ("learning_rate",)

#: Keys of ``Checkpoint.value`` and of ``Value.tag``, the first bytes of a record and of its value.
_VALUE_KEY = protowire.key(1, protowire.LEN)
_TAG_KEY = protowire.key(1, protowire.LEN)
#: Metadata is stored under prefixed names: the optimizer has a parameter called global_step.
_META_PREFIX = "wrn_meta_"


def config_hash(cfg_dict: dict[str, Any]) -> str:
    """Short hash of the maths-relevant config fields (order independent)."""
    picked = {k: cfg_dict.get(k) for k in MATH_FIELDS}
    return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


def checkpoint_name(prefix: str, epoch: int, step: int) -> str:
    """File name of the checkpoint taken after ``step`` of ``epoch`` (1-based epoch)."""
    return f"{prefix}-e{epoch:04d}-s{step:06d}.ckpt"


_NAME_RE = re.compile(r"-e(\d+)-s(\d+)\.ckpt$")


def _meta_entries(meta: dict[str, Any]) -> dict[str, int | str]:
    """``meta`` as stored (MindSpore's ``append_dict``): counters as ints, the rest as strings."""
    extra: dict[str, int | str] = {_META_PREFIX + k: int(meta[k]) for k in META_KEYS if k in meta}
    extra.update({_META_PREFIX + k: str(v) for k, v in meta.items() if k not in META_KEYS})
    return extra


def save(cell, directory: str | os.PathLike, prefix: str, meta: dict[str, Any],
         keep: int = 5) -> Path:
    """Save ``cell``'s parameters (network + optimizer) with ``meta``; return the final path.

    The file is written under a temporary name in the same directory, fsynced and renamed, so a
    reader never sees a partial file under a ``.ckpt`` name. Older checkpoints beyond ``keep``
    are deleted only after the new one is in place, so the only valid checkpoint is never lost.
    Raises ``OSError`` with the path when the write fails; earlier checkpoints stay intact.

    The file is what ``mindspore.save_checkpoint(cell, append_dict=..., crc_check=True)``
    writes, byte for byte, but each tensor goes to the disk straight from its memory and the
    CRC is computed while the data is synced (see ``_write_records``). It is not read back:
    every write and sync reports I/O errors, the size on disk is checked against the bytes
    written, and ``load`` checks the CRC and the parameters before loading anything. Cells
    using what only MindSpore's writer handles (model-parallel layouts, map, cached or
    offloaded parameters) are saved with it and scanned after writing.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(prefix, int(meta["epoch"]), int(meta["step"]))
    # the temporary name ends in .ckpt (else MindSpore appends it) but never matches a
    # checkpoint name, so a crash leaves nothing that list_checkpoints would pick up
    tmp = directory / f".{final.name}.{os.getpid()}.part.ckpt"
    extra = _meta_entries(meta)
    try:
        entries = _entries(cell, extra)
        if entries is None:
            _save_with_mindspore(cell, tmp, extra)
        else:
            _write_new(tmp, entries)
        os.replace(tmp, final)
        fsync_dir(directory)
    except Exception as exc:
        for leftover in directory.glob(f".{final.name}.{os.getpid()}.*"):  # ours and MindSpore's
            try:
                leftover.unlink()
            except OSError:
                pass
        raise OSError(f"could not write checkpoint {final}: {exc}") from exc
    try:
        _write_latest(directory, final, meta)
    except OSError as exc:
        raise OSError(f"checkpoint {final} was written but {directory / 'latest.json'} could not "
                      f"be updated: {exc}") from exc
    _prune(directory, prefix, keep, protect=final)
    return final


def _read_length(fh, path: Path) -> int:
    """Read one varint (a record or name length) from ``fh``; ``OSError`` naming ``path``."""
    try:
        return protowire.read_varint(fh)
    except EOFError:
        raise OSError(f"{path}: ends inside a record header (truncated)") from None
    except ValueError:
        raise OSError(f"{path}: malformed record length") from None


def scan_checkpoint(path: str | os.PathLike, chunk: int = 8 << 20) -> tuple[set[str], int]:
    """Walk a MindSpore ``.ckpt`` file written with ``crc_check=True`` in constant memory.

    The file is a sequence of serialized ``Checkpoint`` messages, each holding one ``Value``
    (a parameter's name and a tensor, or a slice of it), followed by ``b"crc_num"`` and the
    CRC-32 of everything before it as 10 big-endian bytes. Returns (parameter names, bytes);
    raises ``OSError`` if the structure or the CRC does not hold. Loading the file with
    ``mindspore.load_checkpoint`` instead would hold every tensor in memory at once (about the
    file's size again, 0.5 GB for WRN-50-2 with momentum).
    """
    import binascii

    path = Path(path)
    size = path.stat().st_size
    body = size - 17
    if body < 0:
        raise OSError(f"{path}: {size} bytes is too short for a checkpoint")
    names: set[str] = set()
    crc = 0
    with open(path, "rb") as fh:
        while fh.tell() < body:
            start = fh.tell()
            if fh.read(1) != _VALUE_KEY:  # Checkpoint.value, length-delimited
                raise OSError(f"{path}: unexpected data at byte {start}")
            length = _read_length(fh, path)
            value_start = fh.tell()
            if value_start + length > body:
                raise OSError(f"{path}: record at byte {start} runs past the end (truncated)")
            if fh.read(1) != _TAG_KEY:  # Value.tag comes first
                raise OSError(f"{path}: record at byte {start} has no parameter name")
            name_len = _read_length(fh, path)
            names.add(fh.read(name_len).decode("utf-8", "replace"))
            end = value_start + length
            fh.seek(start)
            while fh.tell() < end:  # the whole record goes into the CRC
                block = fh.read(min(chunk, end - fh.tell()))
                if not block:
                    raise OSError(f"{path}: truncated at byte {fh.tell()}")
                crc = binascii.crc32(block, crc)
        trailer = fh.read(17)
    if trailer[:7] != b"crc_num":
        raise OSError(f"{path}: no CRC trailer (written without crc_check, or truncated)")
    if int.from_bytes(trailer[7:], "big") != crc:
        raise OSError(f"{path}: CRC mismatch (the file is corrupt)")
    return names, size


#: MindSpore writes a tensor of more bytes than this as several records (same name and dims,
#: consecutive pieces of the data), which loading joins again.
_RECORD_BYTES = 512 * 1024 * 1024
#: Pieces shorter than this (record headers, small tensors) are gathered into one write.
_SMALL_WRITE = 1 << 20


def _entries(cell, extra: dict[str, Any]) -> list[tuple[str, list[int], str, Any]] | None:
    """What ``mindspore.save_checkpoint(cell, append_dict=extra)`` writes, in its order: (name,
    dims, MindSpore type name, Parameter or numpy array) per entry. None where the cell needs
    what only MindSpore's writer does (model-parallel layouts; map, cached, offloaded or
    pipeline-shared parameters) or ``extra`` holds values other than ints and strings."""
    import numpy as np
    from mindspore.experimental import MapParameter

    def plain(param) -> bool:
        return not (isinstance(param, MapParameter) or param.cache_enable
                    or param.param_info.is_param_init or param.param_info.is_pipeline_shared_param
                    or param.data.offload_file_path() != "")

    if cell.parameter_layout_dict or not all(plain(p) for _, p in cell.parameters_and_names()):
        return None
    cell.init_parameters_data()  # as MindSpore does first (may replace Parameter objects)
    found: dict[str, tuple[list[int], str, Any]] = {}  # by name: a later one replaces in place
    for _, param in cell.parameters_and_names():
        found[param.name] = (list(param.shape), str(param.dtype), param)
    for key, value in extra.items():
        if isinstance(value, str):  # a numpy unicode array, stored with dims [0]
            found[key] = ([0], "str", np.array(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            found[key] = ([], "Int64", np.array(value, np.int64))  # what Tensor(int) holds
        else:
            return None
    return [(name, *rest) for name, rest in found.items()]


def _payload(source) -> memoryview:
    """The bytes of a Parameter or numpy array, without a copy where possible."""
    import numpy as np

    arr = source if isinstance(source, np.ndarray) else source.asnumpy()  # no copy on CPU
    if not isinstance(source, np.ndarray) and arr.nbytes != source.nbytes:
        return memoryview(source.get_bytes())  # a type numpy holds differently
    return memoryview(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def _record_header(name: str, dims: list[int], dtype: str, nbytes: int) -> bytes:
    """The serialized ``Checkpoint{value: [Value{tag, tensor: TensorProto{dims, tensor_type,
    tensor_content}}]}`` up to the tensor content, which follows it (``nbytes`` long). Field
    order and encoding as protobuf writes them (proto2: ``dims`` unpacked, all present)."""
    tensor = b"".join(protowire.varint_field(1, d) for d in dims)  # TensorProto.dims
    tensor += protowire.bytes_field(2, dtype.encode("utf-8"))  # TensorProto.tensor_type
    tensor += protowire.length_prefix(3, nbytes)  # TensorProto.tensor_content
    value = protowire.bytes_field(1, name.encode("utf-8"))  # Value.tag
    value += protowire.length_prefix(2, len(tensor) + nbytes) + tensor  # Value.tensor
    return protowire.length_prefix(1, len(value) + nbytes) + value  # Checkpoint.value


class _FdWriter:
    """Writes byte pieces to a file descriptor in order, keeping a reference to each write.

    Small pieces are gathered into one write; large ones are written from their own memory.
    """

    def __init__(self, fd: int) -> None:
        self.fd, self.size = fd, 0
        self.written: list = []  # the buffers, in file order (for the CRC)
        self._pending = bytearray()

    def add(self, data) -> None:
        if len(data) < _SMALL_WRITE:
            self._pending += data
            if len(self._pending) >= _SMALL_WRITE:
                self.flush()
        else:
            self.flush()
            self.write(data)

    def flush(self) -> None:
        if self._pending:
            buf, self._pending = self._pending, bytearray()  # kept unchanged for the CRC
            self.write(buf)

    def write(self, buf) -> None:
        view = memoryview(buf)
        while view:
            count = os.write(self.fd, view)
            if count <= 0:
                raise OSError("the file system accepted no more bytes")
            view = view[count:]
        self.written.append(buf)
        self.size += len(buf)


def _write_records(fd: int, entries) -> int:
    """Write ``entries`` (see ``_entries``) to ``fd`` in MindSpore's ``.ckpt`` format with its
    CRC trailer; return the number of bytes written.

    The CRC-32 of the records is computed after they are written, from the same memory, while
    a second thread fdatasyncs them: the disk works while this thread computes, so the CRC
    costs little beyond the sync that is needed anyway (this beat a CRC thread running
    alongside the writes, which needs a free core). The trailer and the file size still need
    the caller's final fsync.
    """
    writer = _FdWriter(fd)
    for name, dims, dtype, source in entries:
        data = _payload(source)
        # MindSpore writes nothing for an empty tensor, several records for a huge one
        for start in range(0, len(data), _RECORD_BYTES):
            piece = data[start:start + _RECORD_BYTES]
            writer.add(_record_header(name, dims, dtype, len(piece)))
            writer.add(piece)
    writer.flush()
    failed: list[BaseException] = []

    def sync() -> None:
        try:
            getattr(os, "fdatasync", os.fsync)(fd)
        except BaseException as exc:  # raised below, in the saving thread
            failed.append(exc)

    syncer = threading.Thread(target=sync, name="checkpoint-sync", daemon=True)
    syncer.start()
    crc = 0
    try:
        for buf in writer.written:
            crc = zlib.crc32(buf, crc)  # releases the GIL on large buffers
    finally:
        syncer.join()  # never leave it running on a descriptor about to be closed
    if failed:
        raise failed[0]
    writer.write(b"crc_num" + crc.to_bytes(10, "big"))  # as MindSpore: 10 big-endian bytes
    return writer.size


def _write_new(path: Path, entries) -> None:
    """Create ``path`` (replacing a leftover of a crashed save), write ``entries``, fsync it and
    check its size; it ends up read-only (0400), as MindSpore leaves its files."""
    try:
        path.unlink()  # same name as ours: an earlier process with the same pid
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        written = _write_records(fd, entries)
        os.fchmod(fd, 0o400)
        os.fsync(fd)  # the trailer, the size and the mode (the records are synced already)
        on_disk = os.fstat(fd).st_size
        if on_disk != written:
            raise OSError(f"the file has {on_disk} bytes after {written} were written")
    finally:
        os.close(fd)


def _save_with_mindspore(cell, path: Path, extra: dict[str, Any]) -> None:
    """MindSpore's writer, for cells ``_entries`` declines; the file is fsynced and scanned."""
    import mindspore as ms

    ms.save_checkpoint(cell, str(path), append_dict=extra, crc_check=True)
    with open(path, "rb") as fh:  # MindSpore leaves the file read-only (0400)
        os.fsync(fh.fileno())
    names, _ = scan_checkpoint(path)
    missing = [p.name for p in cell.get_parameters() if p.name not in names]
    if missing:
        raise OSError(f"the written file lacks {len(missing)} parameters (e.g. {missing[0]})")


def _write_latest(directory: Path, final: Path, meta: dict[str, Any]) -> None:
    write_json_atomic(directory / "latest.json", {"path": final.name, **meta}, indent=1)


def list_checkpoints(directory: str | os.PathLike, prefix: str | None = None) -> list[Path]:
    """Checkpoint files in ``directory``, oldest first (by epoch, step)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob("*.ckpt"):
        match = _NAME_RE.search(path.name)
        if match and (prefix is None or path.name.startswith(prefix + "-")):
            found.append(((int(match.group(1)), int(match.group(2))), path))
    return [p for _, p in sorted(found)]


def _prune(directory: Path, prefix: str, keep: int, protect: Path) -> None:
    files = [p for p in list_checkpoints(directory, prefix) if p != protect]
    excess = len(files) + 1 - max(1, keep)
    for path in files[:max(0, excess)]:
        try:
            path.unlink()
        except OSError:
            pass


def load(path: str | os.PathLike, cell) -> dict[str, Any]:
    """Load a checkpoint into ``cell``; return its metadata. Raises ValueError if incomplete.

    Before anything is loaded, the file is read whole and checked (CRC, every parameter of
    ``cell`` present with the right shape), so a broken file leaves ``cell`` untouched.

    Every parameter of ``cell`` must be present in the file (a truncated file can otherwise
    load "successfully" with some parameters missing).
    """
    import mindspore as ms

    path = Path(path)
    try:
        params = ms.load_checkpoint(str(path), crc_check=True)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError on broken files
        raise ValueError(f"checkpoint {path} cannot be read: {exc}") from None
    meta = {}
    for key in list(params):
        if key.startswith(_META_PREFIX):
            value, name = params.pop(key), key[len(_META_PREFIX):]
            if name in META_KEYS:
                meta[name] = int(value.asnumpy())
            else:
                meta[name] = value if isinstance(value, str) else str(value)
    for name in DERIVED:
        params.pop(name, None)
    wanted = [p for p in cell.get_parameters() if p.name not in DERIVED]
    missing = [p.name for p in wanted if p.name not in params]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"checkpoint {path} is incomplete: {len(missing)} parameters missing "
                         f"({shown}); it was probably truncated or belongs to another model")
    wrong = [f"{p.name} {tuple(params[p.name].shape)} != {tuple(p.shape)}"
             for p in wanted if tuple(params[p.name].shape) != tuple(p.shape)]
    if wrong:
        raise ValueError(f"checkpoint {path} does not fit this model: {'; '.join(wrong[:3])}")
    not_loaded, _ = ms.load_param_into_net(cell, params)
    not_loaded = [name for name in not_loaded if name not in DERIVED]
    if not_loaded:
        raise ValueError(f"checkpoint {path}: {len(not_loaded)} parameters were not loaded "
                         f"({', '.join(not_loaded[:5])})")
    return meta


def load_network(path: str | os.PathLike, cfg, cfg_source: str, error: type[Exception]):
    """The network of ``cfg`` (``wrn.models.build_model``) with the parameters of the checkpoint
    ``path``, in evaluation mode: what ``export`` exports and ``predict`` runs. A checkpoint
    that does not fit raises ``error`` (one paragraph: the reason, the config the model came
    from, ``cfg_source``, and the fix)."""
    from wrn.models import build_model

    net = build_model(cfg.model, cfg.num_classes, cfg.image_size, cfg.dropout)
    try:
        load(path, net)
    except ValueError as exc:
        raise error(f"{exc}; the model comes from {cfg_source} ({cfg.model}, num_classes "
                    f"{cfg.num_classes}): pass the config the checkpoint was trained with "
                    f"(--config RUN_DIR/config.yaml)") from None
    net.set_train(False)
    return net


def load_pretrained(path: str | os.PathLike, net) -> list[str]:
    """Initialise ``net`` from a checkpoint for transfer learning; return dropped names.

    Only network parameters are taken (optimizer state and counters are ignored). The
    classifier head is dropped when its shape differs (another class count); any other shape
    mismatch or missing parameter is an error naming it.
    """
    import mindspore as ms

    path = Path(path)
    try:
        params = ms.load_checkpoint(str(path), crc_check=True)
    except Exception as exc:
        raise ValueError(f"--pretrained {path} cannot be read: {exc}") from None
    head = {p.name for p in net.trainable_params()[-2:]}  # the final Dense weight and bias
    dropped, problems = [], []
    for p in net.get_parameters():
        if p.name not in params:
            problems.append(f"{p.name} missing")
        elif tuple(params[p.name].shape) != tuple(p.shape):
            if p.name in head:
                dropped.append(p.name)
            else:
                problems.append(f"{p.name} has shape {tuple(params[p.name].shape)}, the model "
                                f"needs {tuple(p.shape)}")
    own = {p.name for p in net.get_parameters()}
    optimizer_state = ("moments.", "accum.", "global_step", "learning_rate", _META_PREFIX)
    extra = sorted(k for k in params if k not in own and not k.startswith(optimizer_state))
    if extra:
        problems.append(f"{len(extra)} parameters the model does not have, e.g. {extra[0]}")
    if problems:
        raise ValueError(f"--pretrained {path} does not fit this model ({'; '.join(problems[:3])}"
                         f"{' ...' if len(problems) > 3 else ''}); check the config's model name")
    ms.load_param_into_net(net, {k: v for k, v in params.items() if k not in dropped
                                 and k in {p.name for p in net.get_parameters()}})
    return dropped
