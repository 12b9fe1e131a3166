"""Injected faults (``WRN_FAULT``), stall diagnosis, stragglers and --tail-ranks, end to end
with the fake worker (which honours ``WRN_FAULT`` and keeps a stacks file like the real one):
real launcher, agents, signals and files; seconds per test. The same with real MindSpore
workers is in ``test_faults_e2e.py``."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_launch import HOST, assert_all_gone
from tests.support.processes import wait_for

HANG = ("--env", "WRN_FAULT=hang:rank=1:step=5")


def test_injected_hang_is_diagnosed_with_every_ranks_stacks(runs):
    run = runs(*HANG, "--stall-timeout", "1", "--stall-kill", "2", steps=1000)
    assert run.wait() == 1, run.out + run.err
    cause = run.record["root_cause"]
    assert cause["rank"] == 1 and cause["reason"].startswith("stalled: no event for")
    assert cause["where"][0].startswith("rank 1: step 5 (epoch 1, 5/1000), in hang_forever (wrn/faults.py:")
    assert cause["where"][-1] == "rank 1 is not where the others are"
    assert cause["diagnostics"] == "diagnostics/attempt-1"
    files = {p.name: p.read_text() for p in (run.dir / "diagnostics" / "attempt-1").iterdir()}
    assert set(files) == {f"{HOST}-rank0.txt", f"{HOST}-rank1.txt"}
    hung = files[f"{HOST}-rank1.txt"]
    assert "position: step 5 (epoch 1, 5/1000)" in hung and "in hang_forever" in hung
    assert 'faults.py", line' in hung and "Python stacks, every thread" in hung
    assert "where each rank was:" in run.out and "stacks of every rank:" in run.out
    assert any("WRN_FAULT: rank 1 hangs before step 5" in line for line in cause["log_tail"])
    assert_all_gone(run)


def test_a_restart_runs_without_the_fault(runs):
    run = runs(*HANG, "--stall-timeout", "1", "--stall-kill", "2", "--max-restarts", "1", steps=8)
    assert run.wait() == 0, run.out + run.err
    rec = run.record
    assert rec["attempt"] == 2 and rec["status"] == "succeeded"
    assert rec["attempts"][0]["root_cause"]["rank"] == 1
    assert (run.dir / "diagnostics" / "attempt-1" / f"{HOST}-rank1.txt").exists()
    assert not (run.dir / "diagnostics" / "attempt-2").exists()
    assert_all_gone(run)


def test_injected_crash_fails_the_run_as_a_crash(runs):
    run = runs("--env", "WRN_FAULT=crash:rank=0:step=3", steps=100)
    assert run.wait() == 1
    cause = run.record["root_cause"]
    assert (cause["rank"], cause["exit_code"]) == (0, 1)
    assert "WRN_FAULT: rank 0 crashes before step 3" in cause["log_tail"][-1]
    assert_all_gone(run)


def test_a_slow_rank_is_named_a_straggler(runs):
    run = runs("--env", "WRN_FAULT=slow:rank=1:factor=3", steps=20, step_s=0.05)
    assert run.wait() == 0, run.out + run.err
    assert "rank 1 is a straggler: " in run.out
    stragglers = run.record["summary"]["stragglers"]
    assert [s["rank"] for s in stragglers] == [1] and 2.0 < stragglers[0]["ratio"] < 4.0
    assert "stragglers" in run.out and "rank 0 is a straggler" not in run.out


def test_tail_ranks_shows_only_those_ranks_lines(runs):
    run = runs("--tail-ranks", "1", steps=3, plain=1)
    assert run.wait() == 0, run.out + run.err
    assert "[rank 1] rank 1 plain line 0 of step 3" in run.out
    assert "[rank 0]" not in run.out
    assert "rank 0 plain line 0 of step 3" in (run.dir / "logs" / f"{HOST}-rank0.log").read_text()


def test_bad_fault_text_is_refused_before_anything_starts(runs):
    run = runs("--env", "WRN_FAULT=hang:rank=7:step=5")
    assert run.wait() == 2
    assert "names rank 7, but this run has 2 rank(s)" in run.err
    assert not (run.dir / "run.json").exists()


@pytest.mark.slow  # among the longest of the fast tier: keeps `make test-fast` under 3 minutes
def test_stacks_come_back_over_ssh(ssh_runs, sshd):
    hosts = "127.0.0.1 slots=1\n127.0.0.2 slots=1\n"
    run = ssh_runs(sshd, hosts, "--stall-timeout", "1", "--stall-kill", "2", "--env",
                   "WRN_FAULT=hang:rank=1:step=3", fake={"steps": 1000, "connect": 1})
    assert run.wait() == 1, run.out + run.err
    cause = run.record["root_cause"]
    assert (cause["rank"], cause["host"]) == (1, "127.0.0.2")
    folder = run.dir / "diagnostics" / "attempt-1"
    assert sorted(p.name for p in folder.iterdir()) == ["127.0.0.1-rank0.txt", "127.0.0.2-rank1.txt"]
    assert "in hang_forever" in (folder / "127.0.0.2-rank1.txt").read_text()
    assert wait_for(run.all_gone, 5)


def test_a_rank_giving_up_in_the_allreduce_is_not_blamed_for_the_hung_one(runs):
    # MindSpore's CPU AllReduce gives up after about 30 s; here rank 0 does so at once
    run = runs("--env", "WRN_FAULT=hang:rank=1:step=3", rank=0, exit_at=6, steps=1000,
               error="Launch kernel failed: Default/grad_reducer-DistributedGradReducer/AllReduce-op0")
    assert run.wait() == 1, run.out + run.err
    cause = run.record["root_cause"]
    assert cause["rank"] == 1 and cause["reason"].startswith("did not reach the collective: rank 0 ")
    assert cause["where"][0].startswith("rank 1: step 3 (epoch 1, 3/1000), in hang_forever")
    assert re.match(r"rank 0: step \d+ \(epoch 1, \d+/1000\), failed in a collective: exited with code 3",
                    cause["where"][1]), cause["where"]
    assert (run.dir / "diagnostics" / "attempt-1" / f"{HOST}-rank1.txt").exists()
    assert_all_gone(run)
