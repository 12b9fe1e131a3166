"""Injected faults with the real worker (``python -m wrn.train``) on the default job, 2 CPU
workers: the must-hold lines of hang diagnosis and stragglers. Minutes, not seconds: the
launcher logic behind them is covered with the fake worker in ``test_faults.py``."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import pytest

from tests.e2e import test_launch_e2e
from tests.e2e.test_launch_e2e import all_gone, start, succeeded
from tests.support.processes import wait_for
from wrn.hostname import host_name

cleanup = test_launch_e2e.cleanup  # the fixture that kills whatever a run left

pytestmark = pytest.mark.slow

HANG = ("--env", "WRN_FAULT=hang:rank=1:step=5", "--stall-timeout", "10", "--stall-kill", "20",
        "--plain")


def hang_time(run_dir, attempt_logs: str = "logs") -> float:
    """When rank 1 blocked (the fault's own log line)."""
    log = (run_dir / attempt_logs / f"{host_name()}-rank1.log").read_text()
    return float(re.search(r"WRN_FAULT: rank 1 hangs before step 5 .*\(at ([0-9.]+)\)", log)[1])


def test_hang_on_the_default_job_stops_within_20_s_and_names_rank_1(tmp_path, cleanup):
    popen, run_dir = start(tmp_path, *HANG)
    cleanup((popen, run_dir))
    out, err = popen.communicate(timeout=600)
    stopped = time.time()
    assert popen.returncode == 1, out + err
    record = json.loads((run_dir / "run.json").read_text())
    # the run stopped when its last process ended (run.json's end times, in milliseconds)
    ended = max(datetime.fromisoformat(p["end_time"]).timestamp() for p in record["processes"])
    hung = hang_time(run_dir)
    print(f"hang to the last process's end: {ended - hung:.2f} s, to launcher exit: "
          f"{stopped - hung:.2f} s")
    assert ended - hung <= 20.0, out
    assert stopped - hung <= 21.0, out
    cause = record["root_cause"]
    assert cause["rank"] == 1
    assert cause["where"][0].startswith("rank 1: step 5 (epoch 1, 5/18), in hang_forever (wrn/faults.py:")
    assert re.match(r"rank 0: step 5 \(epoch 1, 5/18\), waiting in run_loop \(wrn/loop.py:\d+\), "
                    r"inside mindspore", cause["where"][1]), cause["where"]
    files = sorted(p.name for p in (run_dir / "diagnostics" / "attempt-1").iterdir())
    assert files == [f"{host_name()}-rank0.txt", f"{host_name()}-rank1.txt"]
    assert "root cause: rank 1 on" in out and "rank 1 is not where the others are" in out
    assert wait_for(lambda: all_gone(run_dir), 10)


def test_hang_with_a_restart_left_restarts_and_succeeds(tmp_path, cleanup):
    # an event every step: on a loaded machine 10 steps can take longer than the 20 s limit
    popen, run_dir = start(tmp_path, *HANG, "--max-restarts", "1", "--set", "epoch_size=1",
                           "--set", "log_interval=1")
    cleanup((popen, run_dir))
    _, record = succeeded(popen, run_dir, 900)
    assert record["attempt"] == 2 and record["status"] == "succeeded"
    assert record["attempts"][0]["root_cause"]["rank"] == 1
    assert len(list((run_dir / "diagnostics" / "attempt-1").iterdir())) == 2
    assert wait_for(lambda: all_gone(run_dir), 10)


def test_slow_rank_is_named_a_straggler(tmp_path, cleanup):
    popen, run_dir = start(tmp_path, "--env", "WRN_FAULT=slow:rank=1:factor=3", "--plain",
                           "--set", "epoch_size=1", "--set", "log_interval=2")
    cleanup((popen, run_dir))
    out, record = succeeded(popen, run_dir, 900)
    assert re.search(r"WARNING: rank 1 is a straggler: [0-9.]+x the other ranks' time per step", out), out
    assert "rank 0 is a straggler" not in out
    stragglers = record["summary"]["stragglers"]
    assert [s["rank"] for s in stragglers] == [1] and stragglers[0]["ratio"] > 1.5
