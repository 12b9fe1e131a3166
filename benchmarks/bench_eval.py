"""``wrn-launch eval`` on 2 CPU devices against the in-training evaluation: the cost per image.

A 2-device training run of the default model on a generated set with a large test split
(10 classes, 200 test images each; --quick: 40) evaluates after every epoch. Its evaluations
after epochs 2 .. E-1 are the peer: already compiled, no checkpoint written before them (one
is saved only at the end), so the time from rank 0's ``epoch_end`` event to its ``eval`` event
is the evaluation itself, plus the BatchNorm statistics' AllReduce and the wait for the other
rank's last step (milliseconds; they make the peer slower, never us faster). Seconds per
image = that time / rank 0's share of the test split.

Each of ``--runs`` rounds trains a run and then evaluates it (the two sides alternate, so a
machine that gets busier or quieter affects both); a round's peer sample is the median of its
run's evaluations. Ours: ``wrn-launch eval RUN --devices 2``, a fresh launch; seconds per
image = between rank 0's step events after its first and after its last batch, over the real
images of the batches in between. What a launched evaluation pays once is kept as details,
in seconds: its start-up (from its ``start`` event to the first step event: the pipeline's
start, the graph compile, the first batch), its finish (from the last step event to its
``eval`` event: the counts' AllReduce, a new graph in this process), and the whole launch's
wall time; the training's evaluations pay their compiles once, at the first. Target: ours /
peer <= 1.05.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks import common
from benchmarks.common import log

CLASSES, TRAIN_PER_CLASS = 10, 20


def _events(run_dir: Path) -> list[dict]:
    return common.events_in(run_dir / "metrics.jsonl")


def in_training_costs(run_dir: Path, epochs: int, images: int) -> list[float]:
    """Seconds per image of the training's evaluations after epochs 2 .. epochs-1 (rank 0)."""
    events = [e for e in _events(run_dir) if e.get("rank") == 0]
    ends = {e["epoch"]: e["time"] for e in events if e["event"] == "epoch_end"}
    evals = {e["epoch"]: e["time"] for e in events if e["event"] == "eval"}
    share = (images + 1) // 2  # rank 0 reads range(n)[0::2]
    return [(evals[k] - ends[k]) / share for k in range(2, epochs) if k in ends and k in evals]


def eval_costs(run_dir: Path, images: int, batch: int) -> tuple[float, float, float]:
    """(seconds per image, start-up seconds, finish seconds) of one ``wrn-launch eval``, from
    rank 0's events. Per image: between the step events after its first and after its last
    batch, over the real images of the batches in between. Start-up: from its ``start`` event
    (model loaded) to the first step event (the pipeline's start, the graph compile, the first
    batch). Finish: from the last step event to its ``eval`` event (the counts' AllReduce,
    whose graph is new in this process)."""
    events = [e for e in _events(run_dir) if e.get("rank") == 0]
    start = next(e["time"] for e in events if e["event"] == "start")
    done = next(e["time"] for e in events if e["event"] == "eval")
    steps = [e for e in events if e["event"] == "step"]
    share = (images + 1) // 2
    rows = share - min(batch, share)  # the last step event is after the last (padded) batch
    return (steps[-1]["time"] - steps[0]["time"]) / rows, steps[0]["time"] - start, done - steps[-1]["time"]


def main() -> None:
    parser = common.arg_parser(__doc__.split("\n")[0], runs=5)
    args = parser.parse_args()
    test_per_class = 40 if args.quick else 200
    epochs = 4 if args.quick else 6
    images = CLASSES * test_per_class
    with tempfile.TemporaryDirectory(prefix="bench-eval-", dir=common.bench_tmp()) as tmp:
        tmp = Path(tmp)
        subprocess.run([common.PY, "-m", "wrn.synth", str(tmp / "data"), "--classes", str(CLASSES),
                        "--train-per-class", str(TRAIN_PER_CLASS), "--test-per-class", str(test_per_class)],
                       check=True, capture_output=True, env=common.env(), cwd=tmp)
        cfg = yaml.safe_load((common.ROOT / "configs" / "default.yaml").read_text())
        cfg.update({"data_path": str(tmp / "data"), "epoch_size": epochs, "eval_interval": 1,
                    "save_checkpoint_epochs": epochs, "warmup_epochs": 0})
        (tmp / "job.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
        peer, ours, startups, finishes, walls = [], [], [], [], []
        for i in range(1 if args.quick else args.runs):  # a training, then an evaluation of it
            run = tmp / f"run{i}"
            log(f"training {epochs} epochs on 2 devices, {images} test images")
            subprocess.run([common.PY, "-m", "launcher.cli", "--devices", "2", "--config", str(tmp / "job.yaml"),
                            "--run-dir", str(run), "--plain"], check=True, capture_output=True,
                           env=common.env(), cwd=tmp, timeout=1800)
            costs = in_training_costs(run, epochs, images)
            peer.append(statistics.median(costs))
            log(f"in-training evaluation: {[f'{x * 1e3:.3f}' for x in costs]} ms/image")
            t0 = time.perf_counter()
            subprocess.run([common.PY, "-m", "launcher.cli", "eval", str(run), "--devices", "2",
                            "--run-dir", str(tmp / f"eval{i}"), "--plain"], check=True,
                           capture_output=True, env=common.env(), cwd=tmp, timeout=900)
            walls.append(time.perf_counter() - t0)
            per_image, startup, finish = eval_costs(tmp / f"eval{i}", images, cfg["batch_size"])
            ours.append(per_image)
            startups.append(startup)
            finishes.append(finish)
            log(f"wrn-launch eval: {per_image * 1e3:.3f} ms/image, start-up {startup:.2f} s, "
                f"finish {finish:.2f} s, launch {walls[-1]:.1f} s")
    result = common.compare("eval on 2 devices: seconds per image", [x * 1e3 for x in ours],
                            [x * 1e3 for x in peer], unit="ms/image", target="<= 1.05",
                            peer_name="the in-training evaluations of the run evaluated (median of epochs 2..E-1)")
    common.emit("eval", [result], images=images, epochs=epochs, launch_wall_s=common.spread(walls),
                startup_s=common.spread(startups), finish_s=common.spread(finishes))


if __name__ == "__main__":
    main()
