"""Data-parallel efficiency on this machine's cores: how much 2 CPU workers gain over 1.

Every configuration trains the default model (WRN-10-2, 32 px, batch 32 per worker, the
generated sample data) for one epoch through wrn-launch, with an event after every step. A run's
throughput is, summed over ranks, the images of steps 3..last divided by the time between
those step events (so start-up and graph compilation are left out).

* ``pinned_2x1``: 2 workers, each pinned to its own core, 1 thread (the default since binding
  was measured here; spelled out as ``--bind-cores --threads-per-worker 1``)
* ``pinned_1x1``: 1 worker pinned to one core, 1 thread: the efficiency target is
  ``pinned_2x1 >= 0.9 x 2 x pinned_1x1``
* ``single_2t``: 1 worker, 2 threads, not pinned (what ``--devices 1`` gives)
* ``unpinned_2x1``: 2 workers with the thread budget (1 thread each), not pinned
  (``--no-bind-cores``; the default before this benchmark)
* ``nobudget_2x``: 2 workers with no thread budget and not pinned, started by msrun
  (MindSpore's defaults)
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from benchmarks import common
from benchmarks.common import log

CONFIGS = {
    "pinned_2x1": {"devices": 2, "flags": ["--bind-cores", "--threads-per-worker", "1"]},
    "pinned_1x1": {"devices": 1, "flags": ["--bind-cores", "--threads-per-worker", "1"]},
    "single_2t": {"devices": 1, "flags": []},
    "unpinned_2x1": {"devices": 2, "flags": ["--no-bind-cores"]},
    "nobudget_2x": {"devices": 2, "msrun": True},
}


def throughput(evs: list[dict], batch: int) -> float:
    """Images/s summed over ranks, from each rank's step 3 to its last step."""
    total = 0.0
    for rank in sorted({e["rank"] for e in evs}):
        steps = [e for e in evs if e["event"] == "step" and e["rank"] == rank]
        if len(steps) < 5:
            raise RuntimeError(f"rank {rank} logged only {len(steps)} steps")
        first, last = steps[2], steps[-1]
        total += (last["global_step"] - first["global_step"]) * batch / (last["time"] - first["time"])
    return total


def one_run(name: str, cfg: Path, work: Path, batch: int) -> float:
    spec = CONFIGS[name]
    work.mkdir(parents=True)
    if spec.get("msrun"):
        cmd = common.msrun_cmd(spec["devices"], work / "logs", cfg, work / "out")
        files = lambda: sorted((work / "logs").glob("worker_*.log"))  # noqa: E731
    else:
        cmd = common.launch_cmd(spec["devices"], cfg, work / "run", *spec["flags"])
        files = lambda: [work / "run" / "metrics.jsonl"]  # noqa: E731
    with open(work / "launcher.out", "wb") as out:
        proc = subprocess.Popen(cmd, cwd=common.ROOT, env=common.env(), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=900)
        finally:
            common.kill_tree(proc)
    if rc != 0:
        raise RuntimeError(f"{name} run failed with exit code {rc}; see {work}")
    return throughput([e for f in files() for e in common.events_in(f)], batch)


def main() -> None:
    args = common.arg_parser(__doc__.split("\n")[0]).parse_args()
    common.sample_data()
    batch = 32
    names = list(CONFIGS)
    tput: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="bench-scaling-", dir=common.bench_tmp()) as tmp:
        tmp = Path(tmp)
        cfg = common.write_config(tmp / "cfg.yaml", epoch_size=1, log_interval=1, eval_interval=0,
                                  save_checkpoint_epochs=100, batch_size=batch,
                                  ckpt_path=str(tmp / "ckpt"))
        for i in range(args.runs):
            order = names if i % 2 == 0 else names[::-1]
            for name in order:
                tput[name].append(one_run(name, cfg, tmp / f"{name}-{i}", batch))
            log(f"run {i + 1}/{args.runs}: " + ", ".join(f"{n} {tput[n][-1]:.0f} img/s" for n in names))
    two = tput["pinned_2x1"]
    results = [
        common.compare("dp_efficiency_2_pinned_workers", two, [2 * x for x in tput["pinned_1x1"]],
                       unit="images/s", target=">= 0.9", higher_is_better=True,
                       peer_name="2 x (1 worker pinned to 1 core)"),
        common.compare("two_workers_vs_one_worker_two_threads", two, tput["single_2t"],
                       unit="images/s", target=">= 1.0", higher_is_better=True,
                       peer_name="1 worker x 2 threads"),
        common.compare("core_binding_on_vs_off", two, tput["unpinned_2x1"], unit="images/s",
                       target=">= 1.0", higher_is_better=True,
                       peer_name="2 workers x 1 thread, not pinned"),
        common.compare("thread_budget_on_vs_off", tput["unpinned_2x1"], tput["nobudget_2x"],
                       unit="images/s", target=">= 1.0", higher_is_better=True,
                       peer_name="2 workers without thread budget, not pinned (msrun, MindSpore defaults)"),
    ]
    common.emit("scaling", results, throughput={n: [round(x, 1) for x in v] for n, v in tput.items()},
                cores=len(os.sched_getaffinity(0)), model="wrn10_2", image_size=32,
                batch_per_worker=batch, configs={n: CONFIGS[n] for n in names})


if __name__ == "__main__":
    main()
