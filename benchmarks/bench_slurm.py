"""Launch under Slurm: wrn-launch inside a two-node allocation against --launcher local.

A real two-node Slurm (slurmctld, slurmd n1 and n2 on this machine, as the tests start it:
``tests/support/slurm.py``) runs the same 2-worker CPU job of the default config (1 epoch, an
event every step) two ways, alternating:

* slurm: ``salloc -N2 wrn-launch --devices-per-node 1`` (allocation, pre-flight step on both
  nodes, one agent per node as an srun step, scheduler port checked on the first node);
* local: ``wrn-launch --launcher local --devices 2`` on this host.

Measured: from the instant before the command is spawned to the first completed training step
on every rank (the later of the ranks' first ``step`` events). The difference is what Slurm's
path costs (salloc, the pre-flight step, srun steps) on top of the same training start.
Needs root and slurm-wlm + munge (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import common
from benchmarks.common import PY, log


def _first_step_time(run_dir: Path, world: int) -> float | None:
    evs = common.events_in(run_dir / "metrics.jsonl")
    firsts = {}
    for e in evs:
        if e["event"] == "step" and e["rank"] not in firsts:
            firsts[e["rank"]] = e["time"]
    return max(firsts.values()) if len(firsts) == world else None


def one_run(kind: str, cfg: Path, work: Path, env: dict[str, str]) -> float:
    run_dir = work / "run"
    launch = [PY, "-P", "-m", "launcher.cli", "--backend", "cpu", "--config", str(cfg),
              "--run-dir", str(run_dir), "--plain"]
    if kind == "slurm":
        cmd = ["salloc", "-N2", "--quiet", *launch, "--devices-per-node", "1"]
    else:
        cmd = [*launch, "--launcher", "local", "--devices", "2"]
    work.mkdir(parents=True)
    with open(work / "launcher.out", "wb") as out:
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            first = common.wait_until(lambda: _first_step_time(run_dir, 2), 600,
                                      f"a first step on every rank under {kind} (see {work})",
                                      poll=0.05)
            proc.wait(timeout=600)
        finally:
            common.kill_tree(proc)
    return first - t0


def main() -> None:
    from tests.support.slurm import serve, slurm_binaries

    args = common.arg_parser(__doc__.split("\n")[0]).parse_args()
    bins = slurm_binaries()
    if bins is None or os.geteuid() != 0:
        raise SystemExit("bench_slurm needs root and slurm-wlm + munge (apt-get install -y "
                         "slurm-wlm munge)")
    common.sample_data()
    with tempfile.TemporaryDirectory(prefix="bench-slurm-", dir=common.bench_tmp()) as tmp:
        tmp = Path(tmp)
        cluster_gen = serve(bins, tmp / "slurm")
        cluster = next(cluster_gen)
        try:
            env = cluster.env(common.env())
            cfg = common.write_config(tmp / "cfg.yaml", epoch_size=1, log_interval=1,
                                      eval_interval=0, save_checkpoint_epochs=100,
                                      ckpt_path=str(tmp / "ckpt"))
            runs: dict[str, list[float]] = {"slurm": [], "local": []}
            for i in range(args.runs):
                for kind in (("slurm", "local") if i % 2 == 0 else ("local", "slurm")):
                    seconds = one_run(kind, cfg, tmp / f"{kind}-{i}", env)
                    log(f"{kind} run {i + 1}/{args.runs}: first step on every rank {seconds:.2f} s")
                    runs[kind].append(seconds)
        finally:
            next(cluster_gen, None)
    results = [common.compare("slurm_launch_to_first_step_2_cpu_workers", runs["slurm"],
                              runs["local"], unit="s", target="<= 1.5",
                              peer_name="--launcher local (same job, this host)")]
    common.emit("slurm", results, runs=runs, world=2, config="configs/default.yaml, 1 epoch, "
                "log_interval 1; slurm: salloc -N2 on a two-slurmd cluster on this machine")


if __name__ == "__main__":
    main()
