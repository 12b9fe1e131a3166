"""``--standby`` with the real worker on the default job, 2 CPU workers: a failed attempt is
continued by the standby attempt (started once training ran), the next standby is stopped when
the run ends, and nothing is left running."""

from __future__ import annotations

import pytest

from tests.e2e import test_launch_e2e
from tests.e2e.test_launch_e2e import all_gone, events, start, succeeded
from tests.support.processes import run_processes, wait_for

cleanup = test_launch_e2e.cleanup  # the fixture that kills whatever a run left

pytestmark = pytest.mark.slow


def test_a_restart_continues_from_the_standby_and_the_next_one_is_stopped(tmp_path, cleanup):
    # attempt 1 crashes at global step 12 (of 18); its standby (attempt 2) has been started
    # after the first step and continues; attempt 2 starts the standby of attempt 3, which the
    # end of the run stops
    popen, run_dir = start(tmp_path, "--max-restarts", "2", "--standby", "--plain",
                           "--env", "WRN_FAULT=crash:rank=1:step=12:attempt=1",
                           "--set", "epoch_size=1", "--set", "log_interval=1",
                           "--set", "image_size=16")
    cleanup((popen, run_dir))
    out, record = succeeded(popen, run_dir, 600)
    assert record["attempt"] == 2 and record["status"] == "succeeded"
    assert record["attempts"][0]["root_cause"]["rank"] == 1
    states = [(s["attempt"], s["state"]) for s in record["standbys"]]
    assert states == [(2, "used"), (3, "stopped")], record["standbys"]
    assert "continuing from the standby attempt" in out
    evs = events(run_dir)
    assert sum(e["event"] == "standby" for e in evs) == 2  # attempt 2's ranks, before "go"
    finish = [e for e in evs if e["event"] == "finish"]
    assert len(finish) == 2 and len({e["checksum"] for e in finish}) == 1
    assert wait_for(lambda: all_gone(run_dir) and not run_processes(run_dir), 10)
