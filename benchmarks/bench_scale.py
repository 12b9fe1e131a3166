"""The launcher at many ranks, by simulation: wall time against the ideal, launcher CPU per rank.

Each size N runs ``wrn-launch --devices N --backend cpu`` on this host with a stand-in worker
(``--worker-cmd``, ``--scheduler-cmd none``): every rank emits a start event, 10 step events
0.5 s apart and its finish, so the job's ideal wall time is 5 s whatever N is. The stand-in is
``benchmarks/_sim_worker.c`` compiled with the system's cc (about 1 ms of CPU to start), else
``benchmarks/_sim_worker.py`` under ``python -S`` (about 17 ms: 1,024 of them are 17 s of CPU,
8.5 s of two cores, before the launcher does anything); ``--stand-in`` chooses. Measured per run:

* ``wall``: the launcher process from spawn to exit;
* ``launcher_cpu``: the launcher's own user+system CPU (``getrusage`` in the launcher process,
  children excluded), and per rank;
* ``all_started``: from spawn until the last rank's process had started (run.json's start times);
* ``teardown``: from the last rank's ``finish`` event until the launcher had exited;
* completeness: every rank's log file exists, run.json lists every process with exit code 0.

Also: the live dashboard's render time at the largest size (median of 20 renders into a
180x50 console). Targets: 1,024 ranks finish within 10 s (the peer is the same job at the
smallest size), and launcher CPU at 1,024 ranks <= 4.5x that at 256 (linear would be 4x).
"""

from __future__ import annotations

import io
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common
from benchmarks.common import log

SIM = Path(__file__).resolve().parent / "_sim_worker.py"
STEPS, STEP_S = 10, 0.5
IDEAL_S = STEPS * STEP_S
#: Runs the CLI and reports the launcher's own CPU on stderr when it exits.
_WRAPPER = ("import json, resource, sys\n"
            "from launcher.cli import main\n"
            "code = main(sys.argv[1:])\n"
            "ru = resource.getrusage(resource.RUSAGE_SELF)\n"
            "print('@cpu ' + json.dumps({'cpu': ru.ru_utime + ru.ru_stime, 'rss_mib': ru.ru_maxrss / 1024}),"
            " file=sys.stderr, flush=True)\n"
            "sys.exit(code)\n")


def _iso_seconds(text: str) -> float:
    import datetime as dt
    return dt.datetime.fromisoformat(text).timestamp()


def stand_in(kind: str, root: Path) -> str:
    """The stand-in's command line: ``c`` (compiled here; None without a C compiler), ``python``,
    or ``auto`` (c if it compiles)."""
    if kind in ("c", "auto"):
        cc = shutil.which("cc") or shutil.which("gcc")
        binary = root / "sim_worker"
        if cc and subprocess.run([cc, "-O2", "-o", str(binary), str(SIM.with_suffix(".c"))],
                                 capture_output=True).returncode == 0:
            return str(binary)
        if kind == "c":
            raise SystemExit("bench_scale: --stand-in c needs a C compiler (cc)")
    return f"{sys.executable} -S {SIM}"


def run_once(ranks: int, root: Path, worker: str) -> dict:
    """One simulated job of ``ranks`` ranks with the stand-in ``worker``; its measurements."""
    run_dir = root / f"scale-{ranks}-{time.time_ns()}"
    argv = [common.PY, "-c", _WRAPPER, "--devices", str(ranks), "--backend", "cpu", "--run-dir",
            str(run_dir), "--plain", "--grace", "1", "--worker-cmd", worker,
            "--scheduler-cmd", "none"]
    env = common.env(SIM_STEPS=str(STEPS), SIM_STEP_S=str(STEP_S))
    t0 = time.time()
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    t_exit = time.time()
    if done.returncode != 0:
        raise RuntimeError(f"{ranks} ranks: exit {done.returncode}\n{done.stdout[-2000:]}\n"
                           f"{done.stderr[-2000:]}")
    cpu = next(json.loads(line[5:]) for line in done.stderr.splitlines() if line.startswith("@cpu "))
    record = json.loads((run_dir / "run.json").read_text())
    procs = record["processes"]
    complete = (record["status"] == "succeeded" and len(procs) == ranks
                and all(p["exit_code"] == 0 and p["pid"] for p in procs)
                and all((run_dir / p["log"]).is_file() for p in procs))
    finishes = [e["time"] for e in common.events_in(run_dir / "metrics.jsonl") if e["event"] == "finish"]
    started = max(_iso_seconds(p["start_time"]) for p in procs)
    return {"ranks": ranks, "wall": t_exit - t0, "launcher_cpu": cpu["cpu"],
            "launcher_rss_mib": cpu["rss_mib"], "cpu_per_rank_ms": 1000 * cpu["cpu"] / ranks,
            "all_started": started - t0, "teardown": t_exit - max(finishes),
            "finish_events": len(finishes), "complete": complete}


def dashboard_render_s(ranks: int, renders: int = 20) -> float:
    """Median seconds to render the live dashboard of ``ranks`` ranks that are all stepping."""
    from rich.console import Console

    from cluster.plan import Node, PlanRequest, make_plan
    from launcher.supervise.ranks import RunBoard
    from launcher.ui.dashboard import dashboard
    from wrn.contract import Start, Step

    plan = make_plan(PlanRequest(backend="cpu", nodes=(Node("h1", "127.0.0.1", tuple(range(ranks)),
                                                            (0, 1)),),
                                 run_dir="/r", cwd="/", worker_cmd=("w",), sched_port=29500))
    state = RunBoard.from_plan(plan, "/r")
    now = state.clock()
    for rank, proc in state.ranks.items():
        state.started(proc, now, pid=1000 + rank)
    for rank, proc in state.ranks.items():
        for event in (Start(rank=rank, epochs=1, steps_per_epoch=STEPS),
                      Step(rank=rank, epoch=1, step=3, global_step=3, loss=0.5, imgs_per_s=10.0)):
            state.event(proc, event, now)
    console = Console(file=io.StringIO(), width=180, height=50, force_terminal=True)
    times = []
    for _ in range(renders):
        t = time.perf_counter()
        console.print(dashboard(state, state.clock(), height=50, width=180))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = common.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,64,128,256,512,1024",
                        help="rank counts to simulate (default 16,64,128,256,512,1024)")
    parser.add_argument("--stand-in", choices=("auto", "c", "python"), default="auto",
                        help="the stand-in worker (default auto: the compiled one if cc works)")
    args = parser.parse_args()
    sizes = [int(s) for s in ("16,64,128" if args.quick else args.sizes).split(",")]
    root = common.bench_tmp()
    worker = stand_in(args.stand_in, root)
    log(f"stand-in worker: {worker}")
    rows = []
    for ranks in sizes:
        for _ in range(args.runs):
            row = run_once(ranks, root, worker)
            log(f"{ranks} ranks: wall {row['wall']:.1f} s (ideal {IDEAL_S:g}), launcher CPU "
                f"{row['launcher_cpu']:.2f} s ({row['cpu_per_rank_ms']:.2f} ms/rank), all started "
                f"{row['all_started']:.1f} s, teardown {row['teardown']:.2f} s, complete {row['complete']}")
            rows.append(row)
    by = {r: [x for x in rows if x["ranks"] == r] for r in sizes}

    def med(r: int, key: str) -> float:
        return statistics.median(x[key] for x in by[r])

    results = []
    top = max(sizes)
    if top >= 1024 and 256 in by:
        results.append(common.compare(
            "launcher CPU at 1,024 ranks vs at 256", [x["launcher_cpu"] for x in by[1024]],
            [x["launcher_cpu"] for x in by[256]], unit="s", target="<= 4.5",
            peer_name="the same at 256 ranks"))
    if top >= 1024:
        small = min(sizes)
        results.append(common.compare(
            "1,024 simulated ranks of a 5 s job: wall", [x["wall"] for x in by[1024]],
            [x["wall"] for x in by[small]], unit="s", target="median <= 10 s",
            peer_name=f"the same job at {small} ranks (ideal {IDEAL_S:g} s)",
            met=lambda median, ratio: median <= 10.0))
    render = dashboard_render_s(top)
    log(f"dashboard render at {top} ranks: {render * 1000:.1f} ms")
    common.emit("scale", results, stand_in=worker.split()[0].rsplit("/", 1)[-1], steps=STEPS,
                step_s=STEP_S, ideal_s=IDEAL_S,
                table=[{"ranks": r, "wall": round(med(r, "wall"), 2),
                        "launcher_cpu": round(med(r, "launcher_cpu"), 3),
                        "cpu_per_rank_ms": round(med(r, "cpu_per_rank_ms"), 3),
                        "all_started": round(med(r, "all_started"), 2),
                        "teardown": round(med(r, "teardown"), 2),
                        "complete": all(x["complete"] for x in by[r])} for r in sizes],
                dashboard_render_ms=round(render * 1000, 2), dashboard_ranks=top, samples=rows)


if __name__ == "__main__":
    main()
