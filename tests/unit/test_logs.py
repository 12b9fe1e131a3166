"""``wrn-launch logs``: reading and following a run's logs."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from launcher.commands import logs
from launcher.commands.logs import LogSource, follow, log_sources, print_logs, read_lines, run_is_live
from launcher.rundir.reading import RunDirError, load_run
from tests.support.processes import fake_env


def make_run(root: Path, status: str = "succeeded", pid: int | None = None) -> Path:
    run = root / "run"
    (run / "logs").mkdir(parents=True)
    procs = [{"name": "scheduler", "rank": None, "host": "h1", "pid": pid, "log": "logs/scheduler.log"}]
    procs += [{"name": f"rank{r}", "rank": r, "host": "h1", "pid": pid, "log": f"logs/h1-rank{r}.log"}
              for r in (1, 0)]
    (run / "run.json").write_text(json.dumps({"status": status, "processes": procs}))
    for r in (0, 1):
        (run / "logs" / f"h1-rank{r}.log").write_text("".join(f"r{r} line {i}\n" for i in range(3)))
    (run / "logs" / "scheduler.log").write_text("sched up\n")
    return run


def set_status(run: Path, status: str) -> None:
    data = json.loads((run / "run.json").read_text())
    data["status"] = status
    tmp = run / ".run.json.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, run / "run.json")


def test_sources_in_rank_order_then_scheduler(tmp_path):
    record = load_run(make_run(tmp_path))
    sources = log_sources(record)
    assert [s.label for s in sources] == ["h1:0", "h1:1", "h1:scheduler"]
    assert [s.label for s in log_sources(record, 1)] == ["h1:1"]
    with pytest.raises(RunDirError, match="--rank 7: .* has ranks 0-1"):
        log_sources(record, 7)


def test_sources_without_processes_in_run_json(tmp_path):
    run = make_run(tmp_path)
    (run / "run.json").write_text(json.dumps({"status": "failed"}))
    assert [s.label for s in log_sources(load_run(run))] == ["h1:0", "h1:1"]


def test_print_all_with_prefixes_or_one_rank_plain(tmp_path):
    record = load_run(make_run(tmp_path))
    out = io.StringIO()
    assert print_logs(log_sources(record), out, prefix=True) == 7
    assert out.getvalue().splitlines()[:2] == ["h1:0 r0 line 0", "h1:0 r0 line 1"]
    assert out.getvalue().splitlines()[-1] == "h1:scheduler sched up"
    out = io.StringIO()
    print_logs(log_sources(record, 1), out, prefix=False, last=2)
    assert out.getvalue() == "r1 line 1\nr1 line 2\n"
    assert read_lines(LogSource("x", tmp_path / "missing.log")) == []


def test_follow_interleaves_new_lines_until_the_run_ends(tmp_path):
    run = make_run(tmp_path, status="running", pid=os.getpid())
    record = load_run(run)
    out = io.StringIO()

    def writer():
        time.sleep(0.15)
        with open(run / "logs" / "h1-rank1.log", "a") as fh:
            fh.write("r1 new A\n")
            fh.flush()
            time.sleep(0.1)
            fh.write("r1 half")  # a line without its end yet: held back...
            fh.flush()
        time.sleep(0.1)
        with open(run / "logs" / "h1-rank0.log", "a") as fh:
            fh.write("r0 new B\n")
        with open(run / "logs" / "h1-rank1.log", "a") as fh:
            fh.write(" done\n")  # ...and printed whole
        time.sleep(0.1)
        # a restart archives the logs and starts new files
        (run / "logs" / "attempt-1").mkdir()
        os.replace(run / "logs" / "h1-rank0.log", run / "logs" / "attempt-1" / "h1-rank0.log")
        time.sleep(0.1)
        (run / "logs" / "h1-rank0.log").write_text("r0 attempt 2\n")
        time.sleep(0.2)
        set_status(run, "succeeded")

    thread = threading.Thread(target=writer)
    t0 = time.monotonic()
    thread.start()
    count = follow(log_sources(record), out, True, run_is_live(run), last=1, poll_s=0.03)
    thread.join()
    lines = out.getvalue().splitlines()
    assert time.monotonic() - t0 < 5
    assert lines[:3] == ["h1:0 r0 line 2", "h1:1 r1 line 2", "h1:scheduler sched up"]
    assert lines[3:] == ["h1:1 r1 new A", "h1:0 r0 new B", "h1:1 r1 half done", "h1:0 r0 attempt 2"]
    assert count == len(lines)


def test_follow_ends_when_the_run_is_lost(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = make_run(tmp_path, status="running", pid=dead.pid)
    out = io.StringIO()
    follow(log_sources(load_run(run)), out, True, run_is_live(run), poll_s=0.01)
    assert len(out.getvalue().splitlines()) == 7


def test_logs_command_errors_and_rank(tmp_path, capsys):
    run = make_run(tmp_path)
    out = io.StringIO()
    assert logs.main([str(run), "--rank", "0", "-n", "1"], stream=out) == 0
    assert out.getvalue() == "r0 line 2\n"
    assert logs.main([str(run), "--rank", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wrn-launch logs: error: --rank 5")
    assert err.count("\n") == 1
    assert logs.main([str(tmp_path / "nope")]) == 2
    assert logs.main([str(run), "-n", "-1"]) == 2


def test_logs_follow_stops_on_ctrl_c(tmp_path):
    run = make_run(tmp_path, status="running", pid=os.getpid())
    # Ctrl-C as on a terminal: a suite started in the background by a non-interactive shell
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt for it
    proc = subprocess.Popen([sys.executable, "-m", "launcher.cli", "logs", str(run), "--follow"],
                            env=fake_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = [proc.stdout.readline() for _ in range(7)]  # what is there is printed (and flushed) first
    assert first[-1] == "h1:scheduler sched up\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert out == ""
