"""Shared pieces of the benchmark scripts.

Every script is run as ``python -m benchmarks.<name> [--runs N] [--quick]`` and prints exactly
one JSON object on stdout (progress goes to stderr)::

    {"benchmark": "<name>", "machine": {...}, "results": [<result>, ...], "details": {...}}

A ``<result>`` always holds ``name, ratio, target, met, median, peer_median, unit`` (the
fields ``benchmarks/results.json`` keeps) plus ``min, max, peer_min, peer_max, runs,
peer_runs, peer``. ``ratio`` is ours divided by the peer's median, measured in the same
invocation, so machine speed drifts cancel; ``target`` says which way the ratio must go
("<= 1.0", ">= 2.0", ...), or an absolute bound where the issue sets one ("median < 3 s").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The interpreter running the benchmark (the project's virtual environment).
PY = sys.executable
#: Keys every entry of benchmarks/results.json has.
RESULT_KEYS = ("name", "ratio", "target", "met", "median", "peer_median", "unit")


def log(msg: str) -> None:
    """Progress for the person watching; stdout is reserved for the one JSON object."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def arg_parser(description: str, runs: int = 5) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=runs, help=f"repetitions per side (default {runs})")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes, for checking that the script works (numbers not comparable)")
    return parser


def spread(samples: Sequence[float]) -> dict[str, float]:
    """Median, min and max of ``samples`` (rounded for reading)."""
    if not samples:
        raise ValueError("no samples")
    return {"median": _round(statistics.median(samples)), "min": _round(min(samples)),
            "max": _round(max(samples))}


def _round(x: float) -> float:
    return float(f"{x:.4g}") if x else 0.0


def compare(name: str, ours: Sequence[float], peer: Sequence[float], *, unit: str, target: str,
            peer_name: str, higher_is_better: bool = False,
            met: Callable[[float, float], bool] | None = None, **extra: Any) -> dict[str, Any]:
    """One result: our samples against the peer's, ratio = our median / peer median.

    ``target`` is a comparison on the ratio ("<= 1.03", ">= 0.9"), unless ``met`` is given,
    which gets (our median, ratio) and decides instead (for absolute targets).
    """
    a, b = spread(ours), spread(peer)
    ratio = _round(a["median"] / b["median"]) if b["median"] else float("inf")
    ok = met(a["median"], ratio) if met else _check(ratio, target)
    return {"name": name, "ratio": ratio, "target": target, "met": bool(ok), "median": a["median"],
            "peer_median": b["median"], "unit": unit, "min": a["min"], "max": a["max"],
            "peer_min": b["min"], "peer_max": b["max"], "runs": [_round(x) for x in ours],
            "peer_runs": [_round(x) for x in peer], "peer": peer_name,
            "higher_is_better": higher_is_better} | extra


def _check(ratio: float, target: str) -> bool:
    op, _, value = target.partition(" ")
    bound = float(value)
    return {"<=": ratio <= bound, ">=": ratio >= bound, "<": ratio < bound, ">": ratio > bound}[op]


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        mem = None
    import importlib.metadata as md

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "avx512": "avx512f" in flags, "avx2": "avx2" in flags, "memory_mib": mem,
            "python": platform.python_version(), "mindspore": version("mindspore"),
            "numpy": version("numpy"), "kernel": platform.release()}


def emit(benchmark: str, results: Iterable[dict[str, Any]], **details: Any) -> None:
    """Print the script's one JSON object on stdout."""
    obj = {"benchmark": benchmark, "machine": machine(), "results": list(results), "details": details}
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def env(**extra: str) -> dict[str, str]:
    """Environment for a child: this venv first on PATH (msrun starts ``python`` from PATH),
    the project importable, MindSpore's warnings off, ``extra`` on top."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("MS_", "RANK_", "WRN_")) and k not in ("DEVICE_ID", "LOCAL_RANK")}
    e["PATH"] = f"{Path(PY).parent}{os.pathsep}{e.get('PATH', '')}"
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.setdefault("GLOG_v", "3")
    e["PYTHONUNBUFFERED"] = "1"
    e.update(extra)
    return e


def sample_data() -> Path:
    """The built-in generated sample dataset (the default config's data)."""
    from wrn.synth import ensure_builtin

    return Path(ensure_builtin())


def photo_data(num_classes: int = 10, per_class: int = 100, size: tuple[int, int] = (300, 500)) -> Path:
    """A generated RP2K-format dataset of photo-sized images (sides ``size``), cached."""
    from wrn.synth import data_home, generate

    root = data_home() / f"bench-photos-{num_classes}x{per_class}-{size[0]}-{size[1]}"
    marker = root / ".complete"
    if not marker.exists():
        log(f"generating {num_classes * per_class} images of {size[0]}-{size[1]} px in {root}")
        generate(root, num_classes=num_classes, train_per_class=per_class,
                 test_per_class=max(1, per_class // 10), size=size)
        marker.write_text("ok\n")
    return root


def events_in(path: Path) -> list[dict[str, Any]]:
    """The events in a file read so far (missing file: none): ``@wrn`` lines of a worker log,
    or the JSON lines of a run's ``metrics.jsonl``."""
    from wrn.contract import parse_record as parse

    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                ev = json.loads(line)
            except ValueError:  # the line being written right now
                continue
        else:
            ev = parse(line)
        if isinstance(ev, dict) and "event" in ev:
            out.append(ev)
    return out


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def kill_tree(proc: subprocess.Popen, pids: Iterable[int] = ()) -> None:
    """Make sure nothing of a benchmark's child is left: SIGKILL its group and ``pids``."""
    for p in set(pids) | descendants(proc.pid):
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def wait_until(check: Callable[[], Any], timeout: float, what: str, poll: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy; TimeoutError naming ``what``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def write_config(path: Path, **keys: Any) -> Path:
    """A config file: configs/default.yaml with ``keys`` replaced."""
    import yaml

    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg.update(keys)
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    return path


def bench_tmp() -> Path:
    """Scratch space for benchmark runs: ``runs/.bench`` in the repository (ignored by git, on
    the same disk as a real run directory, unlike a tmpfs /tmp)."""
    path = ROOT / "runs" / ".bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def msrun_cmd(world: int, log_dir: Path, cfg: Path, out: Path) -> list[str]:
    """msrun (``--join=True``) starting ``world`` copies of our unchanged worker on ``cfg``."""
    return [str(Path(PY).parent / "msrun"), f"--worker_num={world}", f"--local_worker_num={world}",
            f"--master_port={free_port()}", f"--log_dir={log_dir}", "--join=True",
            str(ROOT / "wrn" / "train.py"), "--config", str(cfg), "--output-dir", str(out)]


def launch_cmd(devices: int, cfg: Path, run_dir: Path, *flags: str) -> list[str]:
    """wrn-launch on this host's CPU with plain output."""
    return [str(Path(PY).parent / "wrn-launch"), "--devices", str(devices), "--backend", "cpu",
            "--config", str(cfg), "--run-dir", str(run_dir), "--plain", *flags]


def run_worker(cfg: Path, out: Path) -> list[dict[str, Any]]:
    """Our worker standalone (one process) on ``cfg``; returns its events."""
    from wrn.contract import parse_record as parse

    res = subprocess.run([PY, "-m", "wrn.train", "--config", str(cfg), "--output-dir", str(out)],
                         cwd=ROOT, env=env(), capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise RuntimeError(f"worker failed ({res.returncode}): {res.stdout[-2000:]}{res.stderr[-2000:]}")
    return [e for e in map(parse, res.stdout.splitlines()) if e]


def run_bare(cfg: Path) -> dict[str, Any]:
    """``benchmarks/_bare_train.py`` (the ``Model.train`` peer) on ``cfg``; returns its report."""
    res = subprocess.run([PY, "-m", "benchmarks._bare_train", "--config", str(cfg)],
                         cwd=ROOT, env=env(), capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise RuntimeError(f"bare loop failed ({res.returncode}): {res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])
