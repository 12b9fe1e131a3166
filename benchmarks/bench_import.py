"""What the command line costs before it does anything: importing it, and a local dry run.

Each repetition runs, in a fresh interpreter, for this checkout (ours) and for the checkout of
an earlier commit (peer, ``--before REV``, default: the commit before the launcher's reshaping
into subpackages), alternating the two:

* ``python -X importtime -c "import wrn_launch, launcher.cli"``: the import time of the CLI as
  Python itself accounts it (the cumulative microseconds of the statement's top-level imports);
* the wall time of ``wrn-launch --devices 2 --backend cpu --dry-run`` (interpreter start to exit)
  and which of numpy, MindSpore and paramiko it loaded.

Both sides run with the same interpreter and packages; the peer's code comes from a temporary
``git worktree`` of REV. The targets are ours: not slower than before (ratio <= 1.0), and the
dry run loading none of the three.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import common
from benchmarks.common import log

#: The last commit before launcher/ was reshaped into subpackages.
BEFORE = "b08cb7a"
IMPORT = "import wrn_launch, launcher.cli"
DRY_RUN = ("import json, sys, time, contextlib, io\n"
           "import wrn_launch\n"
           "with contextlib.redirect_stdout(io.StringIO()):\n"
           "    rc = wrn_launch.main(['--devices', '2', '--backend', 'cpu', '--dry-run', '--plain',\n"
           "                          '--run-dir', sys.argv[1]])\n"
           "print(json.dumps({'rc': rc, 'loaded': sorted(m for m in ('numpy', 'mindspore', 'paramiko')\n"
           "                                             if m in sys.modules)}))\n")


def import_us(root: Path, cwd: Path) -> tuple[float, list[tuple[str, int]]]:
    """(the statement's import microseconds, the ten modules with the most self time)."""
    done = subprocess.run([common.PY, "-X", "importtime", "-c", IMPORT], cwd=cwd, capture_output=True,
                          text=True, env=common.env(PYTHONPATH=str(root)), timeout=120, check=True)
    rows, ours, started = [], 0, False
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[0].strip().isdigit():
            continue
        self_us, cumulative, name = int(fields[0]), int(fields[1]), fields[2]
        top_level = len(name) - len(name.lstrip()) == 1
        started = started or name.strip() == "wrn_launch"
        if started:
            rows.append((name.strip(), self_us))
            if top_level:
                ours += cumulative
    return float(ours), sorted(rows, key=lambda r: -r[1])[:10]


def dry_run(root: Path, cwd: Path) -> dict:
    """Wall seconds of a local dry run in a fresh interpreter, and what it loaded."""
    run_dir = cwd / "never-made"
    t0 = time.perf_counter()
    done = subprocess.run([common.PY, "-c", DRY_RUN, str(run_dir)], cwd=cwd, capture_output=True,
                          text=True, env=common.env(PYTHONPATH=str(root)), timeout=120, check=True)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = common.arg_parser(__doc__.split("\n")[0], runs=7)
    parser.add_argument("--before", default=BEFORE, help=f"the peer's commit (default {BEFORE})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-import-", dir=common.bench_tmp()) as tmp:
        tmp = Path(tmp)
        peer = tmp / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(peer), args.before], cwd=common.ROOT,
                       check=True, capture_output=True)
        try:
            sides = {"ours": common.ROOT, "before": peer}
            imports: dict[str, list[float]] = {s: [] for s in sides}
            walls: dict[str, list[float]] = {s: [] for s in sides}
            loaded: dict[str, list[str]] = {}
            top: dict[str, list] = {}
            for i in range(1 if args.quick else args.runs):
                for side, root in (sides.items() if i % 2 == 0 else reversed(sides.items())):
                    us, top[side] = import_us(root, tmp)
                    run = dry_run(root, tmp)
                    imports[side].append(us / 1000)
                    walls[side].append(run["wall_s"])
                    loaded[side] = run["loaded"]
                    log(f"{side}: import {us / 1000:.1f} ms, dry run {run['wall_s']:.2f} s, "
                        f"loaded {run['loaded']}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(peer)], cwd=common.ROOT,
                           capture_output=True)
    results = [
        common.compare("CLI import (-X importtime, cumulative)", imports["ours"], imports["before"],
                       unit="ms", target="<= 1.0", peer_name=f"the launcher at {args.before}"),
        common.compare("local --dry-run, fresh interpreter to exit", walls["ours"], walls["before"],
                       unit="s", target="<= 1.0", peer_name=f"the launcher at {args.before}",
                       met=lambda median, ratio: ratio <= 1.0 and not loaded["ours"],
                       loaded=loaded["ours"], peer_loaded=loaded["before"]),
    ]
    common.emit("import", results, before=args.before, top_self_us=top)


if __name__ == "__main__":
    main()
