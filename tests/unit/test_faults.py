"""Fault injection (``wrn.faults``), the reading of stacks (``launcher.supervise.diagnosis``) and the
straggler check (``launcher.supervise.stragglers``): pure functions over text and events."""

from __future__ import annotations

import pytest

from launcher.supervise.diagnosis import RankStacks, describe_position, diagnose
from launcher.supervise.stragglers import Straggler, StragglerCheck
from wrn.config import ConfigError
from wrn.contract import event_from
from wrn.faults import Fault, check_ranks, from_env, parse_faults


def test_fault_texts_parse():
    assert parse_faults("hang:rank=1:step=5") == (Fault("hang", 1, step=5),)
    assert parse_faults("slow:rank=1:factor=3, crash:rank=0:step=2:attempt=all") == (
        Fault("slow", 1, factor=3.0), Fault("crash", 0, step=2, attempt=None))
    assert str(parse_faults("crash:rank=2:step=7:attempt=2")[0]) == "crash:rank=2:step=7:attempt=2"


@pytest.mark.parametrize("text, says", [
    ("", "names no fault"), ("freeze:rank=1:step=5", "unknown fault 'freeze'"),
    ("hang:rank=1", "names no step"), ("hang:step=5", "names no rank"),
    ("hang:rank=x:step=5", "rank 'x' is not a whole number"), ("hang:rank=1:step=0", "step must be 1"),
    ("slow:rank=1:factor=1", "factor must be more than 1"), ("slow:rank=1:step=3", "not step"),
    ("hang:rank=1:step=5:step=6", "given twice"), ("hang:rank=1:step", "not KEY=VALUE"),
    ("crash:rank=1:step=2:attempt=0", "attempt must be 1"),
])
def test_bad_fault_texts_are_one_clear_error(text, says):
    with pytest.raises(ConfigError) as err:
        parse_faults(text)
    assert says in str(err.value) and "the format is" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_fault_for_a_rank_the_run_lacks_is_refused():
    with pytest.raises(ConfigError, match="has 2 rank"):
        check_ranks(parse_faults("hang:rank=2:step=5"), 2)


def test_faults_fire_only_for_their_rank_and_attempt():
    assert from_env(1, {}) is None  # absent: nothing at all
    env = {"WRN_FAULT": "hang:rank=1:step=5", "WRN_ATTEMPT": "1"}
    assert from_env(0, env) is None
    assert from_env(1, env).at_step.keys() == {5}
    assert from_env(1, {**env, "WRN_ATTEMPT": "2"}) is None  # a restart runs clean
    assert from_env(1, {"WRN_FAULT": "hang:rank=1:step=5:attempt=all", "WRN_ATTEMPT": "3"})


def _dump(*frames):
    lines = ["Thread 0x00007f0000000001 (most recent call first):",
             '  File "/usr/lib/python3.11/threading.py", line 324 in wait',
             '  File "/usr/lib/python3.11/threading.py", line 1002 in _bootstrap', "",
             "Current thread 0x00007f0000000002 (most recent call first):"]
    return "\n".join(lines + [f'  File "{f}", line {n} in {fn}' for f, n, fn in frames])


IN_STEP = _dump(("/v/lib/python3.11/site-packages/mindspore/common/api.py", 1060, "__call__"),
                ("/v/lib/python3.11/site-packages/mindspore/nn/cell.py", 700, "__call__"),
                ("/src/wrn/loop.py", 116, "run_loop"), ("/src/wrn/train.py", 350, "train"),
                ("/usr/lib/python3.11/runpy.py", 88, "_run_code"))
HUNG = _dump(("/usr/lib/python3.11/threading.py", 629, "wait"), ("/src/wrn/faults.py", 209, "hang_forever"),
             ("/src/wrn/faults.py", 202, "before_step"), ("/src/wrn/loop.py", 120, "run_loop"),
             ("/usr/lib/python3.11/runpy.py", 88, "_run_code"))
AT_5 = "pid=1 epoch=1 step=5 global_step=5 steps_per_epoch=18"


def test_the_rank_outside_the_collective_is_named_even_among_two():
    found = diagnose([RankStacks(0, "a", "rank0", AT_5, IN_STEP), RankStacks(1, "a", "rank1", AT_5, HUNG)])
    assert found.odd_rank == 1
    assert found.lines[0].startswith("rank 1: step 5 (epoch 1, 5/18), in hang_forever (wrn/faults.py:209)")
    assert found.lines[1].startswith("rank 0: step 5 (epoch 1, 5/18), waiting in run_loop (wrn/loop.py:116), "
                                     "inside mindspore (mindspore/common/api.py:1060")
    assert "AllReduce" in found.lines[-1]


def test_many_ranks_are_grouped_and_a_silent_one_stands_out():
    items = [RankStacks(r, "b" if r >= 4 else "a", f"rank{r}", AT_5, IN_STEP) for r in range(8) if r != 5]
    items.append(RankStacks(5, "b", "rank5", AT_5, "", "state D (uninterruptible sleep)", "no stacks within 2 s"))
    found = diagnose(items)
    assert found.odd_rank == 5 and found.odd_host == "b"
    assert found.lines[0].startswith("rank 5: step 5") and "state D" in found.lines[0]
    assert found.lines[1].startswith("ranks 0-4, 6-7: step 5")
    same = diagnose([RankStacks(r, "a", f"rank{r}", AT_5, IN_STEP) for r in range(3)])
    assert same.odd_rank is None and same.lines[-1] == "every rank is in the same place"


def test_positions_read_as_a_user_counts():
    assert describe_position("pid=3 starting") == "starting (setup, before the first step)"
    assert describe_position("pid=3 epoch=2 end_of_epoch global_step=36 steps_per_epoch=18") == \
        "end of epoch 2 (after step 36)"
    assert describe_position("") is None


def _steps(check, rank, times, step_s, first_step=1):
    for i, t in enumerate(times):
        check.add(event_from({"event": "step", "rank": rank, "epoch": 1,
                              "global_step": first_step + 2 * i, "time": t, "step_s": step_s}))


def test_a_rank_the_others_wait_for_is_a_straggler_after_three_windows():
    # every rank's steps take 0.3 s of wall time (synchronous); rank 1 works 0.3 s of them, the
    # others 0.1 s and wait 0.2 s inside the step
    check = StragglerCheck(world_size=3)
    times = [100 + 0.6 * i for i in range(5)]
    _steps(check, 0, times, 0.25)
    _steps(check, 2, times, 0.25)
    _steps(check, 1, times[:3], 0.05)
    assert not check.named  # two windows so far
    _steps(check, 1, times[3:], 0.05, first_step=7)
    assert list(check.named) == [1] and check.named[1].ratio == pytest.approx(3.0, rel=0.01)
    assert [s.rank for s in check.take_new()] == [1] and check.take_new() == []
    assert check.to_list() == [{"rank": 1, "ratio": 3.0, "since_step": 3}]


def test_equal_ranks_have_no_straggler():
    check = StragglerCheck(world_size=2)
    times = [100 + 0.2 * i for i in range(10)]
    _steps(check, 0, times, 0.09)
    _steps(check, 1, times, 0.1)
    assert not check.named


def test_stall_limits_adapt_unless_given():
    from launcher.config import ADAPTIVE_FLOOR_S, SupervisorConfig

    auto = SupervisorConfig()
    assert auto.adaptive and auto.startup_kill == 2 * auto.startup_timeout
    assert auto.stall_limits() == (ADAPTIVE_FLOOR_S, 2 * ADAPTIVE_FLOOR_S)  # the floor
    assert auto.stall_limits(slowest_median=6.0) == (60.0, 120.0)            # 10 x the step interval
    assert auto.stall_limits(slowest_median=0.1, longest_gap=40.0) == (80.0, 160.0)
    given = SupervisorConfig(stall_timeout=10, stall_kill=20)
    assert not given.adaptive and given.stall_limits(slowest_median=100.0) == (10, 20)
    assert SupervisorConfig(stall_kill=20).stall_limits() == (10, 20)
    assert SupervisorConfig(stall_timeout=7).stall_limits() == (7, 14)


def test_a_named_straggler_shows_as_slow_on_the_dashboard():
    from launcher.config import SupervisorConfig
    from launcher.supervise.ranks import RunBoard
    from launcher.supervise.stalls import StallPolicy

    state = RunBoard("r", "cpu", [(0, "h", 0), (1, "h", 1)],
                     stalls=StallPolicy(SupervisorConfig(stall_timeout=30.0)), t0=100.0)
    for rank in (0, 1):
        state.feed({"event": "start", "rank": rank, "steps_per_epoch": 9, "host": "h"}, 100.0)
    state.progress.stragglers.named[1] = Straggler(1, 3.0, 2)  # as StragglerCheck names it
    assert state.problem(state.ranks[1], 101.0) == "slow"
    assert state.problem(state.ranks[0], 101.0) is None


def test_a_rank_that_gave_up_in_the_allreduce_is_not_blamed_for_the_one_it_waited_for():
    gave_up = RankStacks(0, "a", "rank0", "", error="exited with code 1")
    found = diagnose([RankStacks(1, "a", "rank1", AT_5, HUNG)], failed={0: gave_up})
    assert found.odd_rank == 1
    assert found.lines[0].startswith("rank 1: step 5 (epoch 1, 5/18), in hang_forever")
    assert found.lines[1] == "rank 0: failed in a collective: exited with code 1 [a]"
