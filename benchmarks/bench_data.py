"""Data pipeline throughput, and how long training waits for data.

Part 1 (result ``data_pipeline_imgs_per_s``): images/s of the RP2K train pipeline
(``wrn.pipeline.train_dataset``: decode + random resized crop 224 + flip + normalize + HWC->CHW,
batches of 32, 2 workers) over one full pass of a generated photo-sized dataset, against a
plain single-process PIL loop doing the same work on the same files in the same order and
producing the same float32 [32, 3, 224, 224] batches. Page cache warmed first, so both sides
read from memory. Target: ours >= 2x the PIL loop.

Part 2 (details only): data wait during real training under ``wrn-launch --devices 2``: the
per-rank ``step`` events' ``data_wait_s`` against the step time, for WRN-50-2 at 224 px
(batch 8) and for the default demo config (WRN-10-2, 32 px, builtin sample, batch 32).
``--quick`` runs only the default-config part, with few steps.

    python -m benchmarks.bench_data [--runs N] [--quick]
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.common import ROOT, compare, emit, log

BATCH = 32
IMAGE_SIZE = 224
WORKERS = 2
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)


# --------------------------------------------------------------------------- part 1: throughput


def warm_page_cache(files) -> int:
    """Read every file once so that neither side pays for the disk; return the bytes read."""
    total = 0
    for path in files:
        with open(path, "rb") as fh:
            total += len(fh.read())
    return total


def make_ours(split):
    """Our real training pipeline (rank 0 of 1) and its steps per pass."""
    from wrn.pipeline import train_dataset

    dataset, steps = train_dataset(split, rank=0, world=1, batch_size=BATCH, image_size=IMAGE_SIZE,
                                   seed=1, num_workers=WORKERS, crop_min_scale=CROP_SCALE[0])
    return dataset, steps


def run_ours(dataset, steps: int, limit: int | None = None) -> tuple[float, int]:
    """One full pass of ``dataset`` (or only its first ``limit`` batches); return
    (seconds, images). The clock includes creating the iterator (the pipeline's start-up),
    as in training, where a pipeline is created for every epoch."""
    t0 = time.perf_counter()
    it = dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)
    n = images = 0
    for image, _label in it:
        if n == 0 and (image.shape != (BATCH, 3, IMAGE_SIZE, IMAGE_SIZE) or image.dtype != np.float32):
            raise RuntimeError(f"unexpected batch {image.shape} {image.dtype} from the pipeline")
        n += 1
        images += image.shape[0]
        if limit is not None and n >= limit:
            it.stop()
            break
    seconds = time.perf_counter() - t0
    if limit is None and n != steps:
        raise RuntimeError(f"the pipeline gave {n} batches, expected {steps}")
    return seconds, images


def crop_box(w: int, h: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A RandomResizedCrop box (left, top, right, bottom): random area fraction in
    CROP_SCALE, aspect ratio log-uniform in CROP_RATIO, 10 tries, else a centre crop."""
    area = w * h
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x = int(rng.integers(0, w - cw + 1))
            y = int(rng.integers(0, h - ch + 1))
            return x, y, x + cw, y + ch
    ratio = w / h
    if ratio < CROP_RATIO[0]:
        cw, ch = w, int(round(w / CROP_RATIO[0]))
    elif ratio > CROP_RATIO[1]:
        cw, ch = int(round(h * CROP_RATIO[1])), h
    else:
        cw, ch = w, h
    x, y = (w - cw) // 2, (h - ch) // 2
    return x, y, x + cw, y + ch


def run_peer(files, rng: np.random.Generator) -> tuple[float, int]:
    """The plain PIL loop over ``files`` (a whole number of batches); return (seconds, images)."""
    from PIL import Image

    from wrn.pipeline import MEAN, STD

    mean = np.array(MEAN, dtype=np.float32)
    inv_std = (1.0 / np.array(STD, dtype=np.float32)).astype(np.float32)
    images = 0
    t0 = time.perf_counter()
    for start in range(0, len(files) - BATCH + 1, BATCH):
        batch = np.empty((BATCH, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        for k, path in enumerate(files[start:start + BATCH]):
            with Image.open(path) as img:
                img = img.convert("RGB")
            box = crop_box(img.width, img.height, rng)
            img = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR, box=box)
            if rng.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            arr = (np.asarray(img, dtype=np.float32) - mean) * inv_std
            batch[k] = arr.transpose(2, 0, 1)
        images += batch.shape[0]
    return time.perf_counter() - t0, images


def throughput(args, root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Part 1: both sides alternately, ``args.runs`` times each."""
    from wrn.classindex import build_class_index
    from wrn.splits import scan_split

    classes = build_class_index(root)
    split = scan_split(root, "train", classes, verify="quick")
    nbytes = warm_page_cache(split.files)
    log(f"{len(split.files)} images ({nbytes / 1e6:.1f} MB) in {root}, page cache warmed")

    dataset, steps = make_ours(split)
    order = dataset.wrn_source.epoch_indices(0)
    peer_files = [split.files[i] for i in order]  # same files, same order, same count
    rng = np.random.default_rng(1)

    # warm-up: a few batches of each side (thread start, code paths, allocator)
    run_ours(dataset, steps, limit=3)
    run_peer(peer_files[:2 * BATCH], rng)

    ours, peer = [], []
    for r in range(args.runs):
        sides = [("ours", lambda: run_ours(dataset, steps)), ("peer", lambda: run_peer(peer_files, rng))]
        if r % 2:  # alternate who goes first
            sides.reverse()
        for name, fn in sides:
            seconds, count = fn()
            rate = count / seconds
            (ours if name == "ours" else peer).append(rate)
            log(f"run {r + 1}/{args.runs} {name}: {count} images in {seconds:.2f} s = {rate:.1f} images/s")
    result = compare("data_pipeline_imgs_per_s", ours, peer, unit="images/s", target=">= 2.0",
                     peer_name="PIL loop (1 process)", higher_is_better=True)
    details = {"images_per_pass": steps * BATCH, "files": len(split.files),
               "dataset_mb": round(nbytes / 1e6, 1), "batch_size": BATCH, "image_size": IMAGE_SIZE,
               "num_workers": WORKERS, "dataset": root.name,
               "note": "one full pass per run, pipeline start-up included; page cache warm"}
    return result, details


# --------------------------------------------------------------------------- part 2: training


def training_wait(name: str, cfg_keys: dict[str, Any], steps_wanted: int, timeout: float) -> dict[str, Any]:
    """Launch a 2-rank CPU training with ``cfg_keys``; collect ``steps_wanted`` step events per
    rank after each rank's first (compile) step; stop it; summarise the data wait."""
    ROOT.joinpath("runs").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"bench-data-{name}-", dir=ROOT / "runs"))
    cfg = common.write_config(work / "config.yaml", **cfg_keys)
    run_dir = work / "run"
    cmd = common.launch_cmd(2, cfg, run_dir)
    log(f"{name}: starting {' '.join(cmd[1:])}")
    launcher_log = open(work / "launcher.log", "wb")
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=common.env(), stdout=launcher_log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.monotonic()
    seen_pids: set[int] = set()
    steps: dict[int, list[dict[str, Any]]] = {}
    starts: dict[int, dict[str, Any]] = {}
    error = None
    try:
        while True:
            seen_pids |= common.descendants(proc.pid)
            steps = {}
            for ev in run_events(run_dir):
                if ev.get("event") == "step":
                    steps.setdefault(int(ev["rank"]), []).append(ev)
                elif ev.get("event") == "start":
                    starts[int(ev["rank"])] = ev
                elif ev.get("event") == "error":
                    error = f"rank {ev.get('rank')}: {ev.get('message')}"
            if error:
                break
            if len(steps) == 2 and all(len(v) >= steps_wanted + 1 for v in steps.values()):
                break
            if proc.poll() is not None:
                error = f"the launcher exited with code {proc.returncode} before enough steps"
                break
            if time.monotonic() - t0 > timeout:
                error = f"timed out after {timeout:.0f} s"
                break
            time.sleep(1.0)
    finally:
        elapsed = time.monotonic() - t0
        stop(proc, seen_pids)
        launcher_log.close()
    if error and not steps:
        tail = (work / "launcher.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{name}: {error}; launcher output ends:\n{tail}")
    per_rank = {}
    for rank, evs in sorted(steps.items()):
        evs = evs[1:steps_wanted + 1]  # drop the first step: it includes graph compilation
        if not evs:
            continue
        bs = cfg_keys["batch_size"]
        waits = [float(e["data_wait_s"]) for e in evs]
        step_s = [bs / float(e["imgs_per_s"]) for e in evs if float(e["imgs_per_s"]) > 0]
        mean_wait, mean_step = statistics.fmean(waits), statistics.fmean(step_s)
        per_rank[f"rank{rank}"] = {
            "steps": len(evs), "mean_data_wait_s": round(mean_wait, 5),
            "max_data_wait_s": round(max(waits), 5), "mean_step_s": round(mean_step, 4),
            "median_step_s": round(statistics.median(step_s), 4),
            "wait_fraction": float(f"{mean_wait / mean_step:.3g}") if mean_step else None,
            "imgs_per_s": round(bs / mean_step, 2) if mean_step else None,
            "epochs": sorted({int(e["epoch"]) for e in evs})}
    fractions = [v["wait_fraction"] for v in per_rank.values() if v["wait_fraction"] is not None]
    out = {"model": cfg_keys["model"], "image_size": cfg_keys["image_size"],
           "batch_size": cfg_keys["batch_size"], "world_size": 2,
           "threads_per_rank": sorted({starts[r].get("threads") for r in starts}, key=str),
           "steps_per_epoch": next((s.get("steps_per_epoch") for s in starts.values()), None),
           "ranks": per_rank,
           "max_wait_fraction": max(fractions) if fractions else None,
           "data_bound_over_10pct": (max(fractions) > 0.1) if fractions else None,
           "wall_seconds": round(elapsed, 1)}
    if error:
        out["error"] = error
        out["run_dir"] = str(run_dir)  # kept for a look at its logs
    else:
        shutil.rmtree(work, ignore_errors=True)
    log(f"{name}: " + "; ".join(f"{k} wait {v['mean_data_wait_s']:.4f} s of {v['mean_step_s']:.3f} s/step "
                                f"({100 * v['wait_fraction']:.1f}%)" for k, v in per_rank.items()))
    return out


def run_events(run_dir: Path) -> list[dict[str, Any]]:
    """The worker events of a run so far: the launcher records them in ``metrics.jsonl``
    (the rank logs keep the plain text); the rank logs are read too, in case events are
    left in them."""
    found: list[dict[str, Any]] = []
    try:
        text = (run_dir / "metrics.jsonl").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line still being written
            continue
        if isinstance(record, dict) and "event" in record and "rank" in record:
            found.append(record)
    if not any(ev.get("event") == "step" for ev in found):
        for path in sorted((run_dir / "logs").glob("*rank*.log")):
            found.extend(common.events_in(path))
    return found


def stop(proc: subprocess.Popen, pids: set[int]) -> None:
    """SIGTERM the launcher (it stops its workers), wait; SIGKILL whatever is left."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except OSError:
            pass
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            log("the launcher did not stop within 60 s; killing it")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(common.alive(p) for p in pids):
        time.sleep(0.2)
    left = {p for p in pids if common.alive(p)}
    if proc.poll() is None or left:
        common.kill_tree(proc, left)


def main() -> None:
    parser = common.arg_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args()
    from wrn.classindex import build_class_index
    from wrn.dist import prepare_process_env

    prepare_process_env()
    results: list[dict[str, Any]] = []
    details: dict[str, Any] = {"quick": args.quick}

    photo = common.photo_data(num_classes=10, per_class=20 if args.quick else 100)
    result, info = throughput(args, photo)
    results.append(result)
    details["throughput"] = info
    log(f"ours {result['median']} vs peer {result['peer_median']} images/s: ratio {result['ratio']} "
        f"(target {result['target']}, met={result['met']})")

    sample = common.sample_data()
    default_keys = dict(data_path=str(sample), model="wrn10_2", image_size=32, batch_size=32,
                        num_classes=len(build_class_index(sample)), epoch_size=3, log_interval=1,
                        eval_interval=0, save_checkpoint_epochs=100)
    if not args.quick:
        photo_classes = len(build_class_index(photo))
        keys = dict(data_path=str(photo), model="wrn50_2", image_size=224, batch_size=8,
                    num_classes=photo_classes, epoch_size=1, log_interval=1, eval_interval=0,
                    save_checkpoint_epochs=100)
        details["wrn50_2_training"] = training_wait("wrn50_2", keys, steps_wanted=6, timeout=1500)
    details["default_training"] = training_wait("default", default_keys,
                                                steps_wanted=5 if args.quick else 20, timeout=600)
    emit("data", results, **details)


if __name__ == "__main__":
    main()
