"""Checkpoint write speed, where the time goes, and the training stall it causes.

Result ``checkpoint_write_speed``: ``wrn.checkpoint.save`` of a WRN-50-2 train step (network
parameters + momentum + optimizer counters; written atomically, fsynced, CRC, re-read to
verify) against writing the same tensors' bytes with numpy (``ndarray.tofile`` into one file,
flush + fsync) to the same directory. Both speeds are tensor bytes / seconds in MB/s, so the
ratio is our speed relative to numpy's; target >= 0.8.

Details: file size; the stall (the save call is synchronous: the training loop waits for all of
it, and the next step may run slower after it) against the time of one training step (batch
8, 224 px, random data, compile step excluded); and a breakdown (the
stages of real saves timed from inside: MindSpore's writer with CRC, fsync, verification
re-read, rename, the rest) and, separately, the costs of alternatives (gather to numpy,
writer without CRC; verification by a full load, by a streaming scan, by the tail only).

``--quick`` uses WRN-28-10 at 32 px instead. ``--dir DIR`` picks the directory (default: a
temporary folder under ./runs/); it must be on a real disk (not tmpfs) with >= 4 GB free.

    python -m benchmarks.bench_checkpoint [--runs N] [--quick] [--dir DIR]
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import ROOT, compare, emit, log

MIN_FREE_BYTES = 4 * 1024 ** 3
BATCH = 8
NUM_CLASSES = 2388
#: Memory-backed file systems: writing there says nothing about the disk.
MEMORY_FS = {"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"}
MB = 1e6


# --------------------------------------------------------------------------- the disk


def fs_type(path: Path) -> str:
    """The file system type of the mount holding ``path`` (from /proc/mounts)."""
    path = path.resolve()
    best, kind = "", "unknown"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
            best, kind = mount, parts[2]
    return kind


def target_dir(arg: str | None) -> Path:
    """A fresh directory to write into, on a real disk with enough free space."""
    base = Path(arg).expanduser() if arg else ROOT / "runs"
    base.mkdir(parents=True, exist_ok=True)
    kind = fs_type(base)
    if kind in MEMORY_FS:
        raise SystemExit(f"error: {base} is on {kind} (memory, not disk); pass --dir on a real disk")
    free = shutil.disk_usage(base).free
    if free < MIN_FREE_BYTES:
        raise SystemExit(f"error: {base} has only {free / 1024 ** 3:.1f} GB free; the benchmark needs "
                         f"at least {MIN_FREE_BYTES / 1024 ** 3:.0f} GB (pass --dir elsewhere)")
    return Path(tempfile.mkdtemp(prefix="bench-ckpt-", dir=base))


def clear(directory: Path) -> None:
    """Delete everything in ``directory`` (keeps the disk from filling between repetitions)."""
    for entry in directory.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            try:
                entry.unlink()
            except OSError:
                pass


# --------------------------------------------------------------------------- the model


def build(quick: bool):
    """The train step of wrn/train.py for WRN-50-2 (or WRN-28-10 at 32 px in --quick)."""
    from wrn.dist import setup_mindspore, world_from_env

    info = world_from_env()
    if info.distributed:
        raise SystemExit("error: run this benchmark as a single process (no MS_ROLE/RANK_SIZE)")
    model, size = ("wrn28_10", 32) if quick else ("wrn50_2", 224)
    from wrn.config import load_config

    cfg = load_config(None, [f"model={model}", f"num_classes={NUM_CLASSES}", f"image_size={size}",
                             f"batch_size={BATCH}", "device_target=CPU", "epoch_size=20"])
    setup_mindspore("CPU", cfg.mode, cfg.seed, info)

    from wrn.lr import lr_schedule
    from wrn.models import build_model, count_trainable
    from wrn.steps import amp_level_for, make_loss, make_optimizer, make_train_step

    steps_per_epoch = 100  # only sets the length of the (small) per-step LR array
    net = build_model(cfg.model, cfg.num_classes, cfg.image_size, cfg.dropout)
    lr = lr_schedule(cfg.lr_schedule, cfg.lr, steps_per_epoch, cfg.epoch_size,
                     warmup_epochs=cfg.warmup_epochs, lr_end=cfg.lr_end,
                     decay_epochs=cfg.lr_decay_epochs, decay_factor=cfg.lr_decay_factor)
    amp = amp_level_for(cfg, "CPU")
    optimizer = make_optimizer(net, cfg, lr, loss_scale=cfg.loss_scale if amp != "O0" else 1.0)
    step_cell = make_train_step(net, make_loss(cfg.label_smoothing), optimizer, amp, cfg.loss_scale)
    log(f"built {model} ({count_trainable(net) / 1e6:.1f} M trainable parameters), amp {amp}")
    return cfg, net, step_cell, steps_per_epoch


class Trainer:
    """Runs single train steps on one fixed random batch and times them."""

    def __init__(self, step_cell, cfg) -> None:
        import mindspore as ms
        import numpy as np

        rng = np.random.default_rng(0)
        self.images = ms.Tensor(rng.standard_normal((BATCH, 3, cfg.image_size, cfg.image_size),
                                                    dtype=np.float32))
        self.labels = ms.Tensor(rng.integers(0, cfg.num_classes, BATCH).astype(np.int32))
        self.step_cell = step_cell
        self.global_step = 0

    def step(self) -> float:
        t0 = time.perf_counter()
        loss = self.step_cell(self.images, self.labels)
        loss.asnumpy()  # wait for it
        self.global_step += 1
        return time.perf_counter() - t0


# --------------------------------------------------------------------------- the two sides


def meta_for(cfg, steps_per_epoch: int, global_step: int) -> dict[str, Any]:
    from wrn.checkpoint import config_hash

    return {"epoch": 1, "step": global_step, "global_step": global_step, "world_size": 1,
            "seed": cfg.seed, "steps_per_epoch": steps_per_epoch,
            "config_hash": config_hash(cfg.to_dict()), "model": cfg.model}


def ours_save(step_cell, net, directory: Path, meta: dict[str, Any]) -> tuple[float, Path]:
    """What the worker does to checkpoint (its ``save`` closure, world size 1); return
    (seconds, file)."""
    from wrn import checkpoint
    from wrn.steps import sync_batchnorm_stats

    t0 = time.perf_counter()
    sync_batchnorm_stats(net, 1)
    path = checkpoint.save(step_cell, directory, "bench", meta, keep=2)
    return time.perf_counter() - t0, path


def gather(step_cell) -> dict[str, Any]:
    """Every parameter the checkpoint holds (network, momentum, counters) as numpy arrays
    (``asnumpy``: no copy on CPU)."""
    return {p.name: p.asnumpy() for p in step_cell.get_parameters()}


def numpy_write(arrays: dict[str, Any], path: Path) -> tuple[float, float]:
    """Write the arrays' bytes into one file with numpy, flush + fsync; return (seconds
    total, seconds of the fsync alone)."""
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        for arr in arrays.values():
            arr.tofile(fh)
        fh.flush()
        t1 = time.perf_counter()
        os.fsync(fh.fileno())
        t2 = time.perf_counter()
    return t2 - t0, t2 - t1


# --------------------------------------------------------------------------- breakdown


class Timed:
    """Wraps a function; adds the wall time of every call to ``seconds``."""

    def __init__(self, fn) -> None:
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *a, **kw):
        t = time.perf_counter()
        try:
            return self.fn(*a, **kw)
        finally:
            self.seconds += time.perf_counter() - t
            self.calls += 1


def instrumented_save(step_cell, net, directory: Path, meta: dict[str, Any]) -> dict[str, float]:
    """One real ``wrn.checkpoint.save`` with its stages timed from inside: MindSpore's writer
    (gather + serialise + CRC + write), fsync, the verification re-read, renames (the file and
    latest.json); ``other_s`` is the rest of the total (directory fsync, pruning, ...)."""
    import mindspore as ms

    from wrn import checkpoint

    # the project's own writer, where it has one: writes, CRC and the data sync overlapped
    # with it (the final fsync of the trailer and size is fsync_s)
    writer = ((checkpoint, "_write_records") if hasattr(checkpoint, "_write_records")
              else (ms, "save_checkpoint"))
    patches = [(*writer, "serialise_write_crc_s"), (os, "fsync", "fsync_s"),
               (os, "replace", "rename_s")]
    if hasattr(checkpoint, "_verify_written"):
        patches.append((checkpoint, "_verify_written", "verify_reread_s"))
    else:  # a save without its own verification step: a MindSpore re-read would show here
        patches.append((ms, "load_checkpoint", "verify_reread_s"))
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    timers = {key: Timed(getattr(obj, attr)) for obj, attr, key in patches}
    for obj, attr, key in patches:
        setattr(obj, attr, timers[key])
    try:
        total, path = ours_save(step_cell, net, directory, meta)
    finally:
        for obj, attr, fn in saved:
            setattr(obj, attr, fn)
    out = {"total_s": total, **{key: t.seconds for key, t in timers.items()},
           "fsync_calls": float(timers["fsync_s"].calls)}
    out["other_s"] = total - sum(t.seconds for t in timers.values())
    out["file_bytes"] = float(path.stat().st_size)
    return out


def alternatives(step_cell, directory: Path, meta: dict[str, Any]) -> dict[str, float]:
    """Costs worth knowing when deciding what to optimise: gathering every tensor to numpy,
    CRC-32 of all tensor bytes, MindSpore's writer without and with CRC, and three ways to
    verify the written file: loading it whole (``load_checkpoint``), the streaming scan
    (``wrn.checkpoint.scan_checkpoint``: names + CRC), reading only its tail (MindSpore
    writes the CRC record last)."""
    import mindspore as ms
    import numpy as np

    from wrn import checkpoint

    out: dict[str, float] = {}
    t = time.perf_counter()
    arrays = gather(step_cell)
    out["gather_to_numpy_s"] = time.perf_counter() - t
    t = time.perf_counter()
    crc = 0
    for arr in arrays.values():
        crc = zlib.crc32(memoryview(np.ascontiguousarray(arr)).cast("B"), crc)
    out["crc32_of_payload_s"] = time.perf_counter() - t
    del arrays
    extra = {"wrn_meta_" + k: int(meta[k]) for k in checkpoint.META_KEYS if k in meta}
    path = directory / "bench-alt.ckpt"
    for crc in (False, True):
        t = time.perf_counter()
        ms.save_checkpoint(step_cell, str(path), append_dict=extra, crc_check=crc)
        out[f"serialise_write_{'crc' if crc else 'no_crc'}_s"] = time.perf_counter() - t
        if not crc:
            path.unlink()
    # MindSpore leaves the file read-only for its owner (0o400)
    out["written_file_mode"] = float(path.stat().st_mode & 0o777)
    wanted = [p.name for p in step_cell.get_parameters()]

    t = time.perf_counter()
    names = set(ms.load_checkpoint(str(path)))  # a verification by loading the whole file
    out["verify_full_load_s"] = time.perf_counter() - t
    if any(n not in names for n in wanted):
        raise RuntimeError("the written file lacks parameters")

    if hasattr(checkpoint, "scan_checkpoint"):  # the project's streaming check (CRC + names)
        t = time.perf_counter()
        scanned, _ = checkpoint.scan_checkpoint(path)
        out["verify_scan_s"] = time.perf_counter() - t
        out["verify_scan_ok"] = float(all(n in scanned for n in wanted))

    t = time.perf_counter()
    with open(path, "rb") as fh:  # MindSpore writes "crc_num" + 10 bytes last
        fh.seek(-17, os.SEEK_END)
        tail_ok = fh.read(7) == b"crc_num"
    out["verify_tail_marker_s"] = time.perf_counter() - t
    out["verify_tail_marker_ok"] = float(tail_ok)
    path.unlink()
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = common.arg_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=None,
                        help="directory to write into (default: a temporary folder under ./runs/)")
    parser.add_argument("--train-steps", type=int, default=3,
                        help="timed training steps for the step time (after the compile step)")
    args = parser.parse_args()

    from wrn.dist import prepare_process_env

    prepare_process_env()  # before MindSpore is imported
    directory = target_dir(args.dir)
    log(f"writing into {directory} ({fs_type(directory)}, "
        f"{shutil.disk_usage(directory).free / 1024 ** 3:.0f} GB free)")
    try:
        results, details = run(args, directory)
        emit("checkpoint", results, **details)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(args, directory: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    cfg, net, step_cell, steps_per_epoch = build(args.quick)
    trainer = Trainer(step_cell, cfg)
    compile_s = trainer.step()
    log(f"first train step (compiles): {compile_s:.2f} s")
    step_times = [trainer.step() for _ in range(max(1, args.train_steps))]
    step_s = statistics.median(step_times)
    log(f"train step: median {step_s:.3f} s of {[round(s, 3) for s in step_times]}")

    # own copies: asnumpy() shares the parameters' memory on CPU, and training goes on
    arrays = {name: arr.copy() for name, arr in gather(step_cell).items()}
    payload = sum(a.nbytes for a in arrays.values())
    counts = {"tensors": len(arrays),
              "momentum_tensors": sum(1 for n in arrays if n.startswith(("moments.", "accum."))),
              "payload_mb": round(payload / MB, 1)}
    log(f"{counts['tensors']} tensors, {payload / MB:.1f} MB of tensor data")

    # one untimed save of each kind: first-call costs (imports, allocator growth)
    ours_save(step_cell, net, directory, meta_for(cfg, steps_per_epoch, trainer.global_step))
    clear(directory)
    numpy_write(arrays, directory / "warmup.bin")
    clear(directory)

    ours_speed, peer_speed, ours_s, peer_s, peer_fsync, stalls, after_steps = [], [], [], [], [], [], []
    file_bytes = 0
    for r in range(args.runs):
        order = ["ours", "peer"] if r % 2 == 0 else ["peer", "ours"]
        for side in order:
            if side == "ours":
                seconds, path = ours_save(step_cell, net, directory,
                                          meta_for(cfg, steps_per_epoch, trainer.global_step))
                file_bytes = path.stat().st_size
                after = trainer.step()  # the step right after the save
                ours_s.append(seconds)
                ours_speed.append(payload / MB / seconds)
                stalls.append(seconds)
                after_steps.append(after)
                log(f"run {r + 1}/{args.runs} ours: {seconds:.2f} s = {payload / MB / seconds:.0f} MB/s "
                    f"({file_bytes / MB:.0f} MB file); next step {after:.3f} s")
            else:
                seconds, fsync_s = numpy_write(arrays, directory / "numpy.bin")
                peer_s.append(seconds)
                peer_fsync.append(fsync_s)
                peer_speed.append(payload / MB / seconds)
                log(f"run {r + 1}/{args.runs} numpy: {seconds:.2f} s (fsync {fsync_s:.2f} s) = "
                    f"{payload / MB / seconds:.0f} MB/s")
            clear(directory)
    del arrays

    result = compare("checkpoint_write_speed", ours_speed, peer_speed, unit="MB/s", target=">= 0.8",
                     peer_name="numpy write + fsync", higher_is_better=True)

    log("breakdown: instrumented saves, then the alternatives")
    reps = min(args.runs, 3)
    staged, alts = [], []
    for _ in range(reps):
        staged.append(instrumented_save(step_cell, net, directory,
                                        meta_for(cfg, steps_per_epoch, trainer.global_step)))
        clear(directory)
    for _ in range(reps):
        alts.append(alternatives(step_cell, directory, meta_for(cfg, steps_per_epoch, trainer.global_step)))
        clear(directory)
    breakdown = {k: round(statistics.median(s[k] for s in staged), 4) for k in staged[0]}
    breakdown["file_bytes"] = int(breakdown["file_bytes"])
    breakdown["fsync_calls"] = int(breakdown["fsync_calls"])
    breakdown["repetitions"] = reps
    alt = {k: round(statistics.median(s[k] for s in alts), 4) for k in alts[0]}
    for k in ("verify_scan_ok", "verify_tail_marker_ok"):
        if k in alt:
            alt[k] = bool(alt[k])
    alt["written_file_mode"] = oct(int(alt["written_file_mode"]))
    log("breakdown: " + ", ".join(f"{k} {v}" for k, v in breakdown.items()))
    log("alternatives: " + ", ".join(f"{k} {v}" for k, v in alt.items()))

    stall = statistics.median(stalls)
    after_extra = statistics.median(after_steps) - step_s
    details = {
        "quick": args.quick, "model": cfg.model, "image_size": cfg.image_size, "batch_size": BATCH,
        "num_classes": cfg.num_classes, "directory_fs": fs_type(directory),
        "file_mb": round(file_bytes / MB, 1), **counts,
        "our_seconds": common.spread(ours_s), "numpy_seconds": common.spread(peer_s),
        "numpy_fsync_seconds": common.spread(peer_fsync),
        "stall_seconds": round(stall, 4),
        "step_seconds": round(step_s, 4), "compile_step_seconds": round(compile_s, 2),
        "stall_fraction_of_step": round(stall / step_s, 3),
        "step_after_save_seconds": round(statistics.median(after_steps), 4),
        "step_after_save_extra_seconds": round(after_extra, 4),
        "stall_total_seconds": round(stall + max(0.0, after_extra), 4),
        "breakdown": breakdown,
        "alternatives": alt,
        "note": ("speeds are tensor bytes / seconds for both sides; stall = the save call "
                 "(synchronous in the training loop), stall_total adds any slowdown of the step "
                 "after it"),
    }
    log(f"ours {result['median']} vs numpy {result['peer_median']} MB/s: ratio {result['ratio']} "
        f"(target {result['target']}, met={result['met']}); stall {stall:.2f} s = "
        f"{stall / step_s:.2f} steps")
    return [result], details


if __name__ == "__main__":
    main()
