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

META_KEYS = ("epoch", "step", "global_step", "world_size", "seed")


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
    tmp = directory / f".{final.name}.{os.getpid()}.tmp"
    extra = {k: int(meta[k]) for k in META_KEYS if k in meta}
    extra.update({k: str(v) for k, v in meta.items() if k not in META_KEYS})
    try:
        ms.save_checkpoint(cell, str(tmp), append_dict=extra)
        # MindSpore may append .ckpt to a name without it; find what it wrote.
        written = tmp if tmp.exists() else tmp.with_name(tmp.name + ".ckpt")
        with open(written, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(written, final)
        _fsync_dir(directory)
    except Exception as exc:
        for leftover in (tmp, tmp.with_name(tmp.name + ".ckpt")):
            try:
                leftover.unlink()
            except OSError:
                pass
        raise OSError(f"could not write checkpoint {final}: {exc}") from exc
    _write_latest(directory, final, meta)
    _prune(directory, prefix, keep, protect=final)
    return final


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

    Every parameter of ``cell`` must be present in the file (a truncated file can otherwise
    load "successfully" with some parameters missing).
    """
    import mindspore as ms

    path = Path(path)
    try:
        params = ms.load_checkpoint(str(path))
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError on broken files
        raise ValueError(f"checkpoint {path} cannot be read: {exc}") from None
    meta = {}
    for key in list(params):
        if key in META_KEYS:
            meta[key] = int(params.pop(key).asnumpy())
        elif key in ("config_hash", "model"):
            value = params.pop(key)
            meta[key] = value if isinstance(value, str) else str(value)
    not_loaded, _ = ms.load_param_into_net(cell, params)
    if not_loaded:
        shown = ", ".join(not_loaded[:5]) + (" ..." if len(not_loaded) > 5 else "")
        raise ValueError(f"checkpoint {path} is incomplete: {len(not_loaded)} parameters missing "
                         f"({shown}); it was probably truncated or belongs to another model")
    return meta
