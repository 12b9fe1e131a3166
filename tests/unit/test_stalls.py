"""The stall policy and the stacks round, on a fake clock and fake agent handles; and the one
per-rank state: the dashboard and the monitor's stall policy judge the same events alike."""

from __future__ import annotations

import re

from rich.console import Console

from cluster.plan import Node, PlanRequest, make_plan
from launcher.config import SupervisorConfig
from launcher.supervise.diagnosis import RankStacks
from launcher.supervise.ranks import Outcome, RunBoard
from launcher.supervise.stalls import STACKS_SLACK_S, STACKS_TIMEOUT_S, StacksRound, Stall, StallPolicy, Warn
from launcher.ui.dashboard import dashboard
from wrn.contract import EpochEnd, Start, Step


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeAgent:
    """What a stacks round uses of an ``AgentHandle``: the commands it was sent."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, message) -> None:
        self.sent.append(message.to_dict())


def _board(options: SupervisorConfig, clock: Clock, ranks: int = 2, hosts: int = 1) -> RunBoard:
    per = ranks // hosts
    nodes = tuple(Node(f"h{i}", f"10.0.0.{i + 1}", tuple(range(per)), (0, 1)) for i in range(hosts))
    plan = make_plan(PlanRequest(backend="cpu", nodes=nodes, run_dir="/runs/r", cwd="/",
                                 worker_cmd=("w",), scheduler_cmd=("s",), sched_port=29500))
    board = RunBoard.from_plan(plan, "/runs/r", stalls=StallPolicy(options, clock), t0=clock.t)
    for proc in board.ranks.values():
        board.started(proc, clock.t, pid=100 + proc.rank)
        board.event(proc, Start(rank=proc.rank, epochs=2, steps_per_epoch=10), clock.t)
    return board


def _step_all(board: RunBoard, clock: Clock, epoch: int, step: int) -> None:
    for proc in board.ranks.values():
        board.event(proc, Step(rank=proc.rank, epoch=epoch, step=step, global_step=10 * (epoch - 1) + step,
                               steps_per_epoch=10, loss=1.0, imgs_per_s=5.0), clock.t)


def _dashboard_says(board: RunBoard, now: float) -> dict[int, str]:
    """Each rank's state column as the live dashboard draws it."""
    console = Console(record=True, width=140, height=60, force_terminal=True)
    console.print(dashboard(board, now, height=60, width=140))
    rows = {}
    for line in console.export_text().splitlines():
        match = re.match(r"│\s+(\d+)\s+\S*\s+\d+\s+\d+\s+(\w+)", line)
        if match:
            rows[int(match.group(1))] = match.group(2)
    return rows


def test_dashboard_and_stall_policy_agree_on_a_slow_job_with_evaluation():
    """25 s steps (adaptive limit 10 x 25 = 250 s): an 80 s silence while evaluating is healthy
    for both; a 400 s silence is stalled for both (the dashboard once said stalled after any
    30 s of silence, whatever the monitor's limit)."""
    clock = Clock()
    board = _board(SupervisorConfig(), clock)
    for step in range(1, 11):
        clock.t += 25.0
        _step_all(board, clock, 1, step)
    for proc in board.ranks.values():
        board.event(proc, EpochEnd(rank=proc.rank, epoch=1, seconds=250.0), clock.t)
    clock.t += 80.0  # evaluating
    assert board.stalls.limits(clock.t) == (250.0, 500.0)
    assert not any(board.is_stalled(p, clock.t) for p in board.ranks.values())
    assert _dashboard_says(board, clock.t) == {0: "training", 1: "training"}
    assert board.check_stalls(clock.t) == []
    for step in range(1, 4):
        clock.t += 25.0
        _step_all(board, clock, 2, step)
    clock.t += 400.0  # silent
    assert all(board.is_stalled(p, clock.t) for p in board.ranks.values())
    assert _dashboard_says(board, clock.t) == {0: "stalled", 1: "stalled"}
    actions = board.check_stalls(clock.t)
    assert [type(a) for a in actions] == [Warn, Warn]  # stalled, not yet at the 500 s limit
    assert "rank 0 on h0 looks stalled: no event for 400 s since its last event" in actions[0].text
    assert all(p.stalled and p.record().stalled for p in board.ranks.values())  # run.json too
    assert board.stall_warnings == 2


def test_explicit_limits_warn_then_stall_before_the_limit():
    clock = Clock()
    board = _board(SupervisorConfig(stall_timeout=10, stall_kill=20), clock)
    _step_all(board, clock, 1, 1)
    rank0, rank1 = board.ranks[0], board.ranks[1]
    clock.t += 9.9
    assert board.check_stalls(clock.t) == []
    clock.t += 0.6
    board.event(rank1, Step(rank=1, epoch=1, step=2, global_step=2), clock.t)  # rank 1 is alive
    warned = board.check_stalls(clock.t)
    assert [(type(a), a.proc.rank) for a in warned] == [(Warn, 0)]
    assert board.check_stalls(clock.t + 0.1) == []  # looked at most every 0.5 s
    clock.t += 8.6  # 19.1 s of silence: the stacks are asked for 1 s before the 20 s limit
    stall, = board.check_stalls(clock.t)
    assert isinstance(stall, Stall) and stall.proc is rank0
    assert stall.stop_at == rank0.last_event_at + 20
    assert "stalled: no event for 20 s since its last event (limit 20 s)" == stall.reason
    assert board.stalls.heard(rank0, Step(rank=0, epoch=1, step=2, global_step=2), clock.t)
    assert not rank0.stalled  # heard from: no longer stalled


def test_a_starting_worker_is_measured_from_its_start_against_the_startup_limit():
    clock = Clock()
    options = SupervisorConfig(startup_timeout=100)
    board = _board(options, clock)
    rank0 = board.ranks[0]
    clock.t += 99
    assert not board.is_stalled(rank0, clock.t)  # a start event is no step: still starting
    clock.t += 2
    assert board.is_stalled(rank0, clock.t)
    warned = board.check_stalls(clock.t)
    assert {a.proc.rank for a in warned} == {0, 1} and "since it started" in warned[0].text
    clock.t += options.startup_kill - 101 - 0.5
    assert isinstance(board.check_stalls(clock.t)[0], Stall)


def test_adaptive_limits_follow_the_slowest_rank_and_the_longest_silence():
    clock = Clock()
    board = _board(SupervisorConfig(), clock)
    for step in range(1, 5):
        clock.t += 6.0
        _step_all(board, clock, 1, step)
    assert board.stalls.limits(clock.t) == (60.0, 120.0)  # 10 x 6 s
    clock.t += 45.0
    _step_all(board, clock, 1, 5)  # one 45 s gap between step events
    clock.t += 6.0  # recomputed every few seconds
    assert board.stalls.limits(clock.t) == (90.0, 180.0)  # 2 x the longest silence


def test_an_ended_worker_is_not_judged():
    clock = Clock()
    board = _board(SupervisorConfig(stall_timeout=5), clock)
    rank0 = board.ranks[0]
    board.exited(rank0, Outcome.SUCCEEDED, 0, None)
    clock.t += 100
    assert not board.is_stalled(rank0, clock.t)
    assert all(a.proc is not rank0 for a in board.check_stalls(clock.t))


def _stacks(rank: int, where: str) -> RankStacks:
    position = f"epoch=1 step={rank + 5} global_step={rank + 5} steps_per_epoch=10"
    stacks = (f'Current thread 0x1 (most recent call first):\n'
              f'  File "/srv/wrn/{where}.py", line 9 in {where}\n')
    return RankStacks(rank=rank, host=f"h{rank}", name=f"rank{rank}", position=position, stacks=stacks)


def test_a_stacks_round_asks_every_agent_waits_for_all_then_blames_the_odd_rank():
    clock = Clock()
    board = _board(SupervisorConfig(stall_timeout=10, stall_kill=20), clock, ranks=3, hosts=3)
    _step_all(board, clock, 1, 1)
    clock.t += 19.5
    stall, = [a for a in board.check_stalls(clock.t) if isinstance(a, Stall)]
    agents = {host: FakeAgent() for host in ("h0", "h1", "h2")}
    round_ = StacksRound(stall.proc, stall.reason, agents, clock.t, stop_at=stall.stop_at,
                         since=stall.since)
    round_.ask(agents)
    assert all(a.sent == [{"cmd": "stacks", "timeout": STACKS_TIMEOUT_S}] for a in agents.values())
    round_.answers += [_stacks(0, "loop"), _stacks(1, "loop"), _stacks(2, "faults")]
    round_.answered("h0")
    round_.answered("h1")
    assert round_.status(clock.t) == "waiting"  # h2 has not said it is done
    round_.answered("h2")
    assert round_.status(clock.t) == "waiting"  # every answer is in, the limit is not reached
    clock.t = stall.stop_at
    assert round_.status(clock.t) == "due"
    cause = round_.cause(board.ranks, board.progress, attempt=1)
    assert cause.rank == 2 and "was the first found silent" in cause.reason
    assert cause.diagnostics == "diagnostics/attempt-1"
    assert any(line.startswith("rank 2") for line in cause.where)


def test_a_stacks_round_is_cancelled_when_the_rank_is_heard_from_and_gives_up_waiting():
    clock = Clock()
    board = _board(SupervisorConfig(stall_timeout=10, stall_kill=20), clock)
    _step_all(board, clock, 1, 1)
    rank0 = board.ranks[0]
    round_ = StacksRound(rank0, "stalled", ["h0"], clock.t, stop_at=clock.t + 1,
                         since=rank0.last_event_at)
    clock.t += 0.5
    board.event(rank0, Step(rank=0, epoch=1, step=2, global_step=2), clock.t)
    assert round_.status(clock.t) == "cancelled"
    silent = StacksRound(board.ranks[1], "stalled", ["h0"], clock.t, stop_at=clock.t,
                         since=board.ranks[1].last_event_at)
    assert silent.status(clock.t) == "waiting"  # the agent on h0 has not answered
    clock.t += STACKS_TIMEOUT_S + STACKS_SLACK_S
    assert silent.status(clock.t) == "due"
    cause = silent.cause(board.ranks, board.progress, attempt=2)
    assert cause.rank == 1 and "no answer from the agent on h0" in cause.where
