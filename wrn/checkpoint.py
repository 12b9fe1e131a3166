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
from pathlib import Path
from typing import Any

#: Config fields whose change makes a checkpoint's continuation a different experiment.
MATH_FIELDS = ("model", "num_classes", "image_size", "dropout", "batch_size", "epoch_size", "lr",
               "lr_schedule", "warmup_epochs", "lr_end", "lr_decay_epochs", "lr_decay_factor",
               "momentum", "nesterov", "weight_decay", "label_smoothing", "amp_level", "seed",
               "crop_min_scale")

META_KEYS = ("epoch", "step", "global_step", "world_size", "seed", "steps_per_epoch")
#: Parameters recomputed from the config rather than restored: the per-step LR array's length
#: depends on the world size (steps per epoch); the position in it is global_step.
DERIVED = ("learning_rate",)

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


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(cell, directory: str | os.PathLike, prefix: str, meta: dict[str, Any],
         keep: int = 5) -> Path:
    """Save ``cell``'s parameters (network + optimizer) with ``meta``; return the final path.

    The file is written under a temporary name in the same directory, fsynced and renamed, so a
    reader never sees a partial file under a ``.ckpt`` name. Older checkpoints beyond ``keep``
    are deleted only after the new one is in place, so the only valid checkpoint is never lost.
    Raises ``OSError`` with the path when the write fails; earlier checkpoints stay intact.
    """
    import mindspore as ms

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(prefix, int(meta["epoch"]), int(meta["step"]))
    # the temporary name ends in .ckpt (else MindSpore appends it) but never matches a
    # checkpoint name, so a crash leaves nothing that list_checkpoints would pick up
    tmp = directory / f".{final.name}.{os.getpid()}.part.ckpt"
    extra = {_META_PREFIX + k: int(meta[k]) for k in META_KEYS if k in meta}
    extra.update({_META_PREFIX + k: str(v) for k, v in meta.items() if k not in META_KEYS})
    try:
        ms.save_checkpoint(cell, str(tmp), append_dict=extra, crc_check=True)
        with open(tmp, "rb") as fh:  # MindSpore leaves the file read-only (0400)
            os.fsync(fh.fileno())
        _verify_written(tmp, cell)
        os.replace(tmp, final)
        _fsync_dir(directory)
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


def _varint(fh, path: Path) -> int:
    """Read one protobuf varint from ``fh``."""
    value = shift = 0
    while True:
        byte = fh.read(1)
        if not byte:
            raise OSError(f"{path}: ends inside a record header (truncated)")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise OSError(f"{path}: malformed record length")


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
            if fh.read(1) != b"\x0a":  # field 1 (value), length-delimited
                raise OSError(f"{path}: unexpected data at byte {start}")
            length = _varint(fh, path)
            value_start = fh.tell()
            if value_start + length > body:
                raise OSError(f"{path}: record at byte {start} runs past the end (truncated)")
            if fh.read(1) != b"\x0a":  # Value.tag comes first
                raise OSError(f"{path}: record at byte {start} has no parameter name")
            name_len = _varint(fh, path)
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


def _verify_written(path: Path, cell) -> None:
    """Re-read a freshly written file: intact (CRC), and every parameter of ``cell`` is in it."""
    names, _ = scan_checkpoint(path)
    missing = [p.name for p in cell.get_parameters() if p.name not in names]
    if missing:
        raise OSError(f"the written file lacks {len(missing)} parameters (e.g. {missing[0]})")


def _write_latest(directory: Path, final: Path, meta: dict[str, Any]) -> None:
    record = {"path": final.name, **{k: meta[k] for k in meta}}
    tmp = directory / ".latest.json.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, directory / "latest.json")


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
