"""Launch and teardown: wrn-launch against msrun, both running the unchanged worker.

Each repetition starts a 2-worker CPU job of the default config (1 epoch, an event every step)
with each launcher in turn and measures

* launch: from the instant before the launcher is spawned to the first completed training step
  on every rank (the later of the two ranks' first ``step`` events, whose timestamps the worker
  takes itself), and then
* teardown: rank 1 is SIGKILLed; from that instant until the launcher has exited and no
  process it started is left (every descendant recorded just before the kill is gone).

A third run per repetition measures a restart next to a cold start in the same job:
``wrn-launch --max-restarts 1``, launch to the first step on every rank (cold), then at step
``KILL_AT_STEP`` rank 1 is SIGKILLed and the clock runs from the kill to the first step on every
rank of the restarted attempt (restart). A fourth run does the same with ``--standby`` and a
longer job, and kills rank 1 at its first step after run.json says the standby attempt is ready.

The floor under the launch comparison (``direct``): the processes of wrn-launch's own plan,
planned before the clock starts and spawned straight from the benchmark's process, no launcher
at all, to the first step on every rank. No launcher of this worker can start it faster.

msrun is run with ``--join=True`` (otherwise it returns at once and reports nothing) and gets
the same thread budget our launcher gives each worker (``WRN_NUM_THREADS=1`` on 2 cores).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import common
from benchmarks.common import log

TEARDOWN_LIMIT_S = 3.0
#: The step of rank 1 after which it is SIGKILLed in the restart run.
KILL_AT_STEP = 3


def _first_steps(logs: list[Path], world: int) -> dict[int, dict] | None:
    """rank -> {first step event, start event} once every rank has logged a step."""
    evs = [e for path in logs for e in common.events_in(path)]
    found: dict[int, dict] = {}
    for rank in range(world):
        start = next((e for e in evs if e["event"] == "start" and e["rank"] == rank), None)
        step = next((e for e in evs if e["event"] == "step" and e["rank"] == rank), None)
        if start and step:
            found[rank] = {"step": step, "start": start}
    return found if len(found) == world else None


def one_run(kind: str, cfg: Path, work: Path, world: int = 2) -> dict[str, float]:
    """Start a job with ``kind`` ("wrn-launch" or "msrun"), time launch and teardown."""
    work.mkdir(parents=True)
    if kind == "wrn-launch":
        run_dir = work / "run"
        cmd = common.launch_cmd(world, cfg, run_dir)
        env = common.env()
        logs = lambda: [run_dir / "metrics.jsonl"]  # noqa: E731  (the launcher's event record)
    else:
        cmd = common.msrun_cmd(world, work / "logs", cfg, work / "out")
        env = common.env(WRN_NUM_THREADS=str(max(1, len(os.sched_getaffinity(0)) // world)))
        logs = lambda: sorted((work / "logs").glob("worker_*.log"))  # noqa: E731
    out = open(work / "launcher.out", "wb")
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=common.ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        firsts = common.wait_until(lambda: _first_steps(logs(), world), 300,
                                   f"a first step on every rank under {kind} (see {work})", poll=0.05)
        launch = max(f["step"]["time"] for f in firsts.values()) - t0
        victim = int(firsts[world - 1]["start"]["pid"])
        tree = common.descendants(proc.pid) | {victim}
        t_kill = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        proc.wait(timeout=120)
        t_exit = time.monotonic()
        common.wait_until(lambda: not any(common.alive(p) for p in tree), 60,
                          f"every process of the {kind} job to end")
        t_clean = time.monotonic()
        leftovers = 0
    except TimeoutError:
        leftovers = sum(common.alive(p) for p in common.descendants(proc.pid))
        raise
    finally:
        common.kill_tree(proc)
        out.close()
    return {"launch_s": launch, "teardown_s": max(t_exit, t_clean) - t_kill,
            "exit_s": t_exit - t_kill, "exit_code": proc.returncode, "leftovers": leftovers}


def _steps_after(logs: list[Path], world: int, since: float) -> dict[int, dict] | None:
    """rank -> its first step event stamped after ``since``, once every rank has one."""
    found: dict[int, dict] = {}
    for e in (e for path in logs for e in common.events_in(path)):
        if e["event"] == "step" and e["time"] > since and e["rank"] not in found:
            found[e["rank"]] = e
    return found if len(found) == world else None


def direct_run(cfg: Path, work: Path, world: int = 2) -> dict[str, float]:
    """No launcher at all: the processes of wrn-launch's own plan (scheduler and workers, with
    their argv and environment), planned before the clock starts and spawned directly from
    this process; to the first step on every rank. What any launcher of this worker adds its
    own cost to: the floor under both sides of the launch comparison."""
    from launcher.backends.local import LocalBackend
    from launcher.config import LaunchConfig
    from launcher.session.attempts import RunSession
    from launcher.session.prepare import prepare
    from launcher.ui.renderers import Renderer
    from wrn.contract import AGENT_PARENT_ENV as PARENT_ENV
    from wrn.contract import parse_record as parse

    work.mkdir(parents=True)
    inputs, held = prepare(LaunchConfig.from_fields(devices=str(world), backend="cpu",
                                                    config_file=str(cfg), run_dir=str(work / "run")))
    session = RunSession(inputs, held, Renderer())
    session.create_run_dir()
    plan = session.plan(0)
    base = LocalBackend().agent_env("localhost")
    base.pop(PARENT_ENV, None)
    firsts: dict[int, float] = {}
    lock = threading.Lock()

    def read(rank: int | None, stream) -> None:
        for line in stream:
            event = parse(line.rstrip("\n"))
            if rank is not None and event and event["event"] == "step":
                with lock:
                    firsts.setdefault(rank, float(event["time"]))

    procs = []
    t0 = time.time()
    try:
        for spec in plan.processes:
            env = {k: v for k, v in base.items() if k not in spec.unset}
            env.update(spec.env)
            proc = subprocess.Popen(list(spec.argv), cwd=spec.cwd, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            procs.append(proc)
            threading.Thread(target=read, args=(spec.rank, proc.stdout), daemon=True).start()
        common.wait_until(lambda: len(firsts) == world or None, 300,
                          f"a first step on every rank, processes spawned directly (see {work})",
                          poll=0.05)
        return {"launch_s": max(firsts.values()) - t0}
    finally:
        for proc in procs:
            common.kill_tree(proc)
        session.close()


def _standby_state(run_dir: Path) -> str | None:
    """The state of the run's newest standby in run.json (None: none yet)."""
    try:
        standbys = json.loads((run_dir / "run.json").read_text()).get("standbys") or []
    except (OSError, ValueError):
        return None
    return standbys[-1].get("state") if standbys else None


def restart_run(cfg: Path, work: Path, world: int = 2, standby: bool = False) -> dict[str, float]:
    """``wrn-launch --max-restarts 1``: cold launch to the first step on every rank, then rank 1
    SIGKILLed after step ``KILL_AT_STEP`` and the time to the first step on every rank again.
    ``standby``: with ``--standby``, and the kill at rank 1's first step after the standby
    attempt is ready."""
    work.mkdir(parents=True)
    run_dir = work / "run"
    metrics = [run_dir / "metrics.jsonl"]
    out = open(work / "launcher.out", "wb")
    flags = ("--max-restarts", "1") + (("--standby",) if standby else ())
    t0 = time.time()
    proc = subprocess.Popen(common.launch_cmd(world, cfg, run_dir, *flags),
                            cwd=common.ROOT, env=common.env(), stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        firsts = common.wait_until(lambda: _first_steps(metrics, world), 300,
                                   f"a first step on every rank (see {work})", poll=0.05)
        cold = max(f["step"]["time"] for f in firsts.values()) - t0
        victim = int(firsts[world - 1]["start"]["pid"])
        kill_at = KILL_AT_STEP
        if standby:
            common.wait_until(lambda: _standby_state(run_dir) == "ready", 300,
                              f"the standby attempt ready (see {work})", poll=0.05)
            kill_at = 1 + max(e["global_step"] for e in common.events_in(metrics[0])
                              if e["event"] == "step" and e["rank"] == world - 1)
        common.wait_until(lambda: any(e["event"] == "step" and e["rank"] == world - 1
                                      and e["global_step"] >= kill_at
                                      for e in common.events_in(metrics[0])), 300,
                          f"step {kill_at} of rank {world - 1}", poll=0.02)
        t_kill = time.time()
        os.kill(victim, signal.SIGKILL)
        again = common.wait_until(lambda: _steps_after(metrics, world, t_kill), 300,
                                  f"a step on every rank after the restart (see {work})", poll=0.05)
        restart = max(e["time"] for e in again.values()) - t_kill
        proc.wait(timeout=600)
    finally:
        common.kill_tree(proc)
        out.close()
    out = {"cold_s": cold, "restart_s": restart, "exit_code": proc.returncode}
    if standby:
        out["standby"] = _standby_state(run_dir)
    return out


def main() -> None:
    args = common.arg_parser(__doc__.split("\n")[0]).parse_args()
    common.sample_data()
    with tempfile.TemporaryDirectory(prefix="bench-launch-", dir=common.bench_tmp()) as tmp:
        tmp = Path(tmp)
        cfg = common.write_config(tmp / "cfg.yaml", epoch_size=1, log_interval=1, eval_interval=0,
                                  save_checkpoint_epochs=100, ckpt_path=str(tmp / "ckpt"))
        long_cfg = common.write_config(tmp / "cfg2.yaml", epoch_size=2, log_interval=1,
                                       eval_interval=0, save_checkpoint_epochs=100,
                                       ckpt_path=str(tmp / "ckpt2"))
        # long enough for the standby to be ready (about 10 s of training here) before the kill
        standby_cfg = common.write_config(tmp / "cfg4.yaml", epoch_size=4, log_interval=1,
                                          eval_interval=0, save_checkpoint_epochs=100,
                                          ckpt_path=str(tmp / "ckpt4"))
        runs: dict[str, list[dict]] = {"wrn-launch": [], "msrun": [], "direct": [],
                                       "restart": [], "restart-standby": []}
        kinds = ["wrn-launch", "msrun", "direct"]
        for i in range(args.runs):
            for kind in kinds[i % 3:] + kinds[:i % 3]:
                if kind == "direct":
                    r = direct_run(cfg, tmp / f"direct-{i}")
                    log(f"direct spawn run {i + 1}/{args.runs}: first step on every rank "
                        f"{r['launch_s']:.2f} s")
                    runs[kind].append(r)
                    continue
                r = one_run(kind, cfg, tmp / f"{kind}-{i}")
                log(f"{kind} run {i + 1}/{args.runs}: first step on every rank {r['launch_s']:.2f} s, "
                    f"teardown {r['teardown_s']:.2f} s (exit code {r['exit_code']})")
                runs[kind].append(r)
            r = restart_run(long_cfg, tmp / f"restart-{i}")
            log(f"restart run {i + 1}/{args.runs}: cold start to the first step {r['cold_s']:.2f} s, "
                f"SIGKILL to the next step {r['restart_s']:.2f} s (exit code {r['exit_code']})")
            runs["restart"].append(r)
            r = restart_run(standby_cfg, tmp / f"restart-standby-{i}", standby=True)
            log(f"restart run with --standby {i + 1}/{args.runs}: cold start to the first step "
                f"{r['cold_s']:.2f} s, SIGKILL to the next step {r['restart_s']:.2f} s (standby "
                f"{r['standby']}, exit code {r['exit_code']})")
            runs["restart-standby"].append(r)
    ours, peer, again = runs["wrn-launch"], runs["msrun"], runs["restart"]
    warm = runs["restart-standby"]
    results = [
        common.compare("launch_to_first_step_2_cpu_workers", [r["launch_s"] for r in ours],
                       [r["launch_s"] for r in peer], unit="s", target="<= 0.5",
                       peer_name="msrun (same worker)"),
        common.compare("launch_floor_processes_spawned_directly_vs_msrun",
                       [r["launch_s"] for r in runs["direct"]], [r["launch_s"] for r in peer],
                       unit="s", target="<= 0.5", peer_name="msrun (same worker)"),
        common.compare("teardown_after_worker_sigkill", [r["teardown_s"] for r in ours],
                       [r["teardown_s"] for r in peer], unit="s",
                       target=f"median < {TEARDOWN_LIMIT_S:g} s", peer_name="msrun --join=True",
                       met=lambda median, ratio: median < TEARDOWN_LIMIT_S),
        common.compare("restart_sigkill_to_next_step_vs_cold_start", [r["restart_s"] for r in again],
                       [r["cold_s"] for r in again], unit="s", target="<= 0.6",
                       peer_name="cold start to the first step, same runs"),
        common.compare("restart_with_standby_vs_cold_start", [r["restart_s"] for r in warm],
                       [r["cold_s"] for r in warm], unit="s", target="<= 0.6",
                       peer_name="cold start to the first step, same runs"),
    ]
    emit_details = {kind: [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                           for r in rs] for kind, rs in runs.items()}
    common.emit("launch", results, runs=emit_details, world=2, config="configs/default.yaml, "
                "1 epoch, log_interval 1")


if __name__ == "__main__":
    main()
