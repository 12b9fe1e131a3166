"""Memory: peak RSS of our worker against a bare ``Model.train`` process on the same job.

Two jobs, each run by our worker (standalone, one process, one epoch: training, the end-of-run
checkpoint and evaluation) and by ``benchmarks/_bare_train.py`` (the same model, pipeline and
optimizer under ``Model.train``, nothing else):

* ``default``: configs/default.yaml (WRN-10-2, 32 px, batch 32, generated sample data)
* ``wrn50_2_b8``: WRN-50-2 at 224 px, batch 8, on a few generated photo-sized images

Peak RSS is the process's ``ru_maxrss`` (the input pipeline runs in threads, so it is
included). The per-worker peak of a 2-worker ``wrn-launch`` run of each job is reported in the
details.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from benchmarks import common
from benchmarks.common import log


def ours(cfg: Path, out: Path) -> float:
    finish = next(e for e in common.run_worker(cfg, out) if e["event"] == "finish")
    return float(finish["max_rss_mib"])


def bare(cfg: Path) -> float:
    return float(common.run_bare(cfg)["max_rss_mib"])


def launched(cfg: Path, run_dir: Path) -> list[float]:
    """Per-rank peak RSS of a 2-worker wrn-launch run of ``cfg``."""
    res = subprocess.run(common.launch_cmd(2, cfg, run_dir), cwd=common.ROOT, env=common.env(),
                         capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise RuntimeError(f"wrn-launch failed ({res.returncode}): {res.stdout[-3000:]}")
    evs = common.events_in(run_dir / "metrics.jsonl")
    return [e["max_rss_mib"] for e in sorted(evs, key=lambda e: e["rank"]) if e["event"] == "finish"]


def main() -> None:
    args = common.arg_parser(__doc__.split("\n")[0]).parse_args()
    per_class = 2 if args.quick else 3
    photos = common.photo_data(num_classes=10, per_class=per_class)
    with tempfile.TemporaryDirectory(prefix="bench-memory-", dir=common.bench_tmp()) as tmp:
        tmp = Path(tmp)
        jobs = {
            "default": common.write_config(tmp / "default.yaml", epoch_size=1, eval_interval=0,
                                           ckpt_path=str(tmp / "ckpt")),
            "wrn50_2_b8": common.write_config(tmp / "wrn50.yaml", data_path=str(photos), model="wrn50_2",
                                              image_size=224, batch_size=8, num_classes=10,
                                              epoch_size=1, eval_interval=0, log_interval=1,
                                              ckpt_path=str(tmp / "ckpt50")),
        }
        if args.quick:
            jobs.pop("wrn50_2_b8")
        common.sample_data()
        results, distributed = [], {}
        for job, cfg in jobs.items():
            a, b = [], []
            for i in range(args.runs):
                for side in (("ours", "bare") if i % 2 == 0 else ("bare", "ours")):
                    (a.append(ours(cfg, tmp / f"{job}-out-{i}")) if side == "ours" else b.append(bare(cfg)))
                log(f"{job} run {i + 1}/{args.runs}: worker {a[-1]:.0f} MiB, Model.train {b[-1]:.0f} MiB")
            results.append(common.compare(f"peak_rss_{job}", a, b, unit="MiB", target="<= 1.1",
                                          peer_name="bare Model.train process"))
            distributed[job] = launched(cfg, tmp / f"{job}-launch")
            log(f"{job} under wrn-launch --devices 2: per-rank peak {distributed[job]} MiB")
    common.emit("memory", results, wrn_launch_2_workers_peak_rss_mib=distributed)


if __name__ == "__main__":
    main()
