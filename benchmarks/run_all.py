"""Run every benchmark, one after another, and keep the results.

``python -m benchmarks.run_all [--runs N] [--only NAME ...] [--quick]`` (``make bench``) runs
each ``benchmarks/bench_*.py`` in its own process (nothing else should run on the machine
meanwhile), then writes

* ``benchmarks/results.json``: a list of ``{name, ratio, target, met, median, peer_median,
  unit}``, one per result, and
* ``benchmarks/last-run.json``: every script's whole JSON object (machine, each run's samples,
  min/max, details),

and prints the results as a Markdown table (the one in BENCHMARKS.md). With ``--only`` the
other benchmarks' previous results are kept. ``--quick`` checks that the scripts work; its
numbers are not comparable, so it writes nothing unless ``--write`` is given.
``--markdown`` only prints the table of the last saved run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import PY, RESULT_KEYS, ROOT, log

HERE = Path(__file__).resolve().parent
#: Run order: cheap and independent first; the names are the modules benchmarks.bench_<name>.
BENCHMARKS = ("import", "launch", "hang", "loop", "data", "scaling", "checkpoint", "memory", "cpu", "scale",
              "slurm", "startup", "predict", "eval")
RESULTS = HERE / "results.json"
LAST_RUN = HERE / "last-run.json"


def run_one(name: str, runs: int | None, quick: bool) -> dict:
    cmd = [PY, "-m", f"benchmarks.bench_{name}"]
    if runs is not None:
        cmd += ["--runs", str(runs)]
    if quick:
        cmd.append("--quick")
    log(f"=== {name}: {' '.join(cmd[1:])}")
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    if res.returncode != 0 or not lines:
        raise SystemExit(f"benchmark {name} failed (exit code {res.returncode}); its messages are above")
    obj = json.loads(lines[-1])
    obj["benchmark"] = name  # the module name, whatever the script calls itself
    obj["seconds"] = round(time.monotonic() - t0, 1)
    return obj


def markdown(objs: list[dict]) -> str:
    """The results table: one row per result."""
    rows = ["| result | ours (median, min-max) | peer (median, min-max) | ratio | target | met |",
            "|---|---|---|---|---|---|"]
    for obj in objs:
        for r in obj["results"]:
            rows.append(f"| {r['name']} | {r['median']:g} {r['unit']} ({r['min']:g}-{r['max']:g}) "
                        f"| {r['peer_median']:g} ({r['peer_min']:g}-{r['peer_max']:g}), {r['peer']} "
                        f"| {r['ratio']:g} | {r['target']} | {'yes' if r['met'] else '**no**'} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=None, help="repetitions per side (scripts' default: 5)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only these ({', '.join(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the scripts work")
    parser.add_argument("--write", action="store_true", help="save results even with --quick")
    parser.add_argument("--markdown", action="store_true", help="print the last run's table and exit")
    parser.add_argument("--merge", nargs="+", default=[], metavar="FILE",
                        help="also keep these saved outputs of single scripts (one JSON object each, "
                        "e.g. python -m benchmarks.bench_cpu > cpu.json), replacing that benchmark's "
                        "earlier result")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(LAST_RUN.read_text())["benchmarks"]))
        return 0
    names = args.only or ([] if args.merge else list(BENCHMARKS))  # --merge alone runs nothing
    merged = []
    for path in args.merge:
        obj = json.loads(Path(path).read_text().strip().splitlines()[-1])
        obj["benchmark"] = obj["benchmark"].removeprefix("bench_")
        merged.append(obj)
    objs = merged + [run_one(name, args.runs, args.quick) for name in names]
    if not args.quick or args.write:
        partial = args.only or args.merge
        previous = json.loads(LAST_RUN.read_text())["benchmarks"] if LAST_RUN.exists() and partial else []
        kept = [o for o in previous if o["benchmark"] not in {o2["benchmark"] for o2 in objs}]
        order = {name: i for i, name in enumerate(BENCHMARKS)}
        allobjs = sorted(kept + objs, key=lambda o: order.get(o["benchmark"], 99))
        LAST_RUN.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                        "benchmarks": allobjs}, indent=1, ensure_ascii=False) + "\n")
        RESULTS.write_text(json.dumps([{k: r[k] for k in RESULT_KEYS} for o in allobjs for r in o["results"]],
                                      indent=1, ensure_ascii=False) + "\n")
        log(f"wrote {RESULTS.relative_to(ROOT)} and {LAST_RUN.relative_to(ROOT)}")
        objs = allobjs
    print(markdown(objs))
    missed = [r["name"] for o in objs for r in o["results"] if not r["met"]]
    if missed:
        log(f"targets missed: {', '.join(missed)} (BENCHMARKS.md says why)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
