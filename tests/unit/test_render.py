"""The live dashboard, replayed from recorded event streams (``tests/fixtures/events``) into
recorded Rich consoles at fixed widths, and the renderers driven the way the supervisor drives
them. No processes are started here (the pseudo-terminal runs are in e2e/test_render_pty.py)."""

from __future__ import annotations

import io
import json
import os
import re

import pytest
from rich.console import Console

from launcher.config import SupervisorConfig
from launcher.supervise.progress import RunProgress
from launcher.supervise.ranks import Outcome, RunBoard
from launcher.supervise.result import RunSummary
from launcher.supervise.stalls import StallPolicy
from launcher.ui.dashboard import dashboard
from launcher.ui.formatting import fmt_ago, fmt_bytes
from launcher.ui.procstat import read_rss
from launcher.ui.renderers import JsonRenderer, PlainRenderer, RichRenderer, make_renderer
from tests.support import EVENTS
from wrn.contract import event_from
from wrn.hostname import local_names

WIDTHS = (80, 120, 200)
STREAMS = {"real2": 2, "ranks8": 8, "ranks64": 64}


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (EVENTS / f"{name}.jsonl").read_text().splitlines()]


def stall_policy(stall_after: float) -> StallPolicy:
    """The stall policy with a fixed warning limit (``--stall-timeout``)."""
    return StallPolicy(SupervisorConfig(stall_timeout=stall_after))


def state_for(name: str, until_s: float | None = None, stall_after: float = 20.0) -> tuple[RunBoard, float]:
    """A RunBoard fed ``name``'s events up to ``until_s`` seconds after the first; returns
    it and the time of the last event fed."""
    records = load(name)
    starts = {r["rank"]: r for r in records if r["event"] == "start"}
    world = next(iter(starts.values()))["world_size"]
    hosts = sorted({r["host"] for r in starts.values()})
    per_host = world // len(hosts)
    state = RunBoard(f"{name}-run", "gpu" if world > 2 else "cpu",
                     [(r, starts[r]["host"], r % per_host) for r in sorted(starts)],
                     stalls=stall_policy(stall_after), t0=records[0]["time"] - 5)
    state.progress = RunProgress(world)
    until = None if until_s is None else records[0]["time"] + until_s
    return state, state.replay(records, until)


def render(renderable, width: int, height: int = 60) -> str:
    console = Console(record=True, width=width, height=height, force_terminal=True, color_system="truecolor")
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(STREAMS))
def test_dashboard_mid_run_at_every_width(name, width):
    world = STREAMS[name]
    state, last = state_for(name, until_s=40)
    text = render(dashboard(state, last + 1, height=200, width=width), width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines)
    assert f"wrn-launch · {name}-run" in lines[0]
    assert f"world {world}" in text
    assert "elapsed" in text
    assert "ETA" in text
    assert re.search(r"epoch \d+/(3|10)", text)
    assert re.search(r"step \d+/\d+", text)
    assert "throughput" in text
    assert "imgs/s" in text
    assert "top-1" in text
    for col in ("rank", "host", "pid", "state", "loss", "last"):
        assert col in text, col
    # every rank has its own row (200 lines of height: nothing collapses)
    rows = [line for line in lines if re.match(r"│\s+\d+\s", line)]
    assert len(rows) == world
    assert "skipped images 1" in text  # rank 0's warning in every stream


def test_dashboard_two_ranks_real_stream_content():
    state, last = state_for("real2", until_s=60)
    text = render(dashboard(state, last + 2, height=40, width=120), 120)
    assert "backend CPU · 1 host: node1 · world 2" in text
    assert "epoch 4/10" in text
    assert "step 72/180" in text
    assert "40%" in text
    assert "top-1 65.67% (epoch 4)" in text
    row0 = next(line for line in text.splitlines() if re.match(r"│\s+0\s", line))
    assert "node1" in row0
    assert "31274" in row0
    assert "training" in row0
    assert "18/18" in row0
    assert "0.849" in row0
    assert "2.0s" in row0
    assert "rank 0: skipped 1 unreadable image file(s)" in text


def test_dashboard_finished_run_shows_final_accuracy_and_no_eta():
    state, last = state_for("real2")
    state.finished_status = "succeeded"
    for rank in (0, 1):
        state.exited(state.ranks[rank], Outcome.SUCCEEDED, 0, None, expected=True)
    text = render(dashboard(state, last + 2, height=40, width=100), 100)
    assert "succeeded" in text.splitlines()[0]
    assert "top-1 98.33% (final)" in text
    assert "ETA" not in text
    assert text.count(" done ") == 2
    assert "step 180/180" in text
    assert "100%" in text


def test_slow_rank_is_highlighted():
    state, last = state_for("ranks8", until_s=20)
    view = state.ranks[5]
    assert state.is_slow(view)
    assert state.problem(view, last) == "slow"
    assert not any(state.is_slow(state.ranks[r]) for r in range(8) if r != 5)
    console = Console(record=True, width=120, force_terminal=True, color_system="truecolor")
    console.print(dashboard(state, last + 1, height=60, width=120))
    styled = console.export_text(styles=True)
    row5 = next(line for line in styled.splitlines() if "40005" in line)  # rank 5's pid
    assert "slow" in row5
    assert "\x1b[1;33m" in row5  # bold yellow
    assert "slow" not in styled.replace(row5, "")


def test_stalled_rank_in_64_is_highlighted_and_collapsed_view_keeps_it():
    state, last = state_for("ranks64", until_s=60)
    now = last + 1
    stalled = state.ranks[37]
    assert state.is_stalled(stalled, now)
    assert state.problem(stalled, now) == "stalled"
    assert state.problem(state.ranks[12], now) == "slow"
    assert [r for r in range(64) if state.problem(state.ranks[r], now) == "stalled"] == [37]
    for width in WIDTHS:
        text = render(dashboard(state, now, height=30, width=width), width, height=30)
        lines = text.splitlines()
        assert len(lines) <= 30, (width, len(lines))
        # one row per host, node1..node8 with their rank spans, then the problem ranks alone
        for host in range(1, 9):
            assert re.search(rf"{(host - 1) * 8}-{host * 8 - 1}\s+node{host}\s", text), host
        assert "8 hosts: node1 ... node8 · world 64" in text
        assert "7 run 1 STALL" in text
        assert "7 run 1 slow" in text
        assert re.search(r"│\s+37\s.*stalled", text)
        assert re.search(r"│\s+12\s.*slow", text)
        assert not re.search(r"│\s+36\s", text)  # healthy ranks are folded into their host row


def test_64_ranks_full_view_groups_by_host():
    state, last = state_for("ranks64", until_s=20)
    text = render(dashboard(state, last + 1, height=None, width=200), 200, height=200)
    lines = text.splitlines()
    rows = [line for line in lines if re.match(r"│\s+\d+\s", line)]
    assert len(rows) == 64
    # the host name is printed once per group, on its first rank
    assert sum("node3" in line for line in rows) == 1
    assert "node3" in next(line for line in rows if re.match(r"│\s+16\s", line))


def test_short_screen_with_many_hosts_says_what_it_hides():
    state = RunBoard("tiny", "cpu", [(r, f"h{r}", 0) for r in range(40)], t0=0.0)
    state.progress = RunProgress(40)
    text = render(dashboard(state, 1.0, height=16, width=80), 80, height=16)
    assert "more host(s)" in text
    assert len(text.splitlines()) <= 16


def test_live_state_lifecycle_and_warnings():
    state = RunBoard("r", "cpu", [(0, "h", 0), (1, "h", 1)], stalls=stall_policy(5.0), t0=100.0)
    assert sorted(state.processes) == ["rank0", "rank1"]  # no scheduler row
    state.started(state.ranks[0], 100.0, pid=11)
    assert state.ranks[0].state == "starting"
    assert state.ranks[1].state == "waiting"
    state.feed({"event": "start", "rank": 0, "pid": 11, "steps_per_epoch": 4, "epochs": 2}, 101.0)
    state.feed({"event": "step", "rank": 0, "epoch": 1, "step": 2, "global_step": 2,
                "steps_per_epoch": 4, "loss": 1.5, "imgs_per_s": 10.0}, 102.0)
    view = state.ranks[0]
    assert (view.state, view.epoch, view.step, view.loss) == ("training", 1, 2, 1.5)
    assert state.quiet_s(view, 104.0) == pytest.approx(2.0)
    assert not state.is_stalled(view, 104.0)
    assert state.is_stalled(view, 108.0)
    state.feed({"event": "warning", "rank": 0, "message": "bad files", "skipped_files": 3}, 103.0)
    warned, = state.check_stalls(108.0)  # what the monitor warns with, counted once
    state.message("warning", warned.text, 108.0)
    state.message("info", "not kept", 108.0)
    assert state.skipped_files == {0: 3}
    assert state.stall_warnings == 1
    assert len(state.warnings) == 2
    state.feed({"event": "error", "rank": 0, "message": "boom", "kind": "RuntimeError"}, 109.0)
    assert view.state == "failed"
    assert state.problem(view, 109.0) == "failed"
    state.exited(view, Outcome.FAILED, 1, None)
    assert view.state == "failed"
    assert view.exit_code == 1
    assert state.quiet_s(view, 200.0) is None
    state.exited(state.ranks[1], Outcome.FAILED, None, "SIGTERM", expected=True)
    assert state.ranks[1].state == "stopped"
    state.begin_attempt(None, 110.0)  # a restart, the same ranks
    assert state.attempt == 2
    assert state.ranks[0].state == "waiting"
    assert state.ranks[0].host == "h"
    assert "restart 1" in state.warnings[-1][1]
    text = render(dashboard(state, 111.0, height=30, width=100), 100)
    assert "attempt 2" in text
    assert "restarts 1" in text
    assert "stalls 1" in text


def test_aggregate_and_latest_eval():
    state, last = state_for("ranks8", until_s=20)
    total = state.aggregate_imgs_per_s()
    assert total == pytest.approx(sum(v.imgs_per_s for v in state.ranks.values()))
    assert state.latest_eval().epoch >= 1
    assert state.elapsed(last) > 0
    assert state.median_imgs_per_s() > 700


def test_formatting_helpers():
    assert fmt_bytes(None) == ""
    assert fmt_bytes(512) == "512B"
    assert fmt_bytes(3 << 20) == "3.0M"
    assert fmt_bytes(431_000_000) == "411M"
    assert fmt_bytes(int(2.5 * (1 << 30))) == "2.5G"
    assert fmt_ago(None) == ""
    assert fmt_ago(0.42) == "0.4s"
    assert fmt_ago(12.2) == "12s"
    assert fmt_ago(185) == "3:05"


def test_read_rss_of_this_process_and_of_nothing():
    rss = read_rss(os.getpid())
    assert rss
    assert rss > 1 << 20
    assert read_rss(None) is None
    assert read_rss(2 ** 22 + 12345) is None


def test_local_host_names_include_localhost():
    names = local_names()
    assert "localhost" in names
    assert os.uname().nodename.split(".")[0] in names


def test_make_renderer_picks_by_stream_and_flags(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setenv("TERM", "xterm")
    assert isinstance(make_renderer(io.StringIO()), PlainRenderer)
    assert isinstance(make_renderer(Tty()), RichRenderer)
    assert isinstance(make_renderer(Tty(), plain=True), PlainRenderer)
    assert isinstance(make_renderer(Tty(), json_lines=True), JsonRenderer)
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(make_renderer(Tty()), PlainRenderer)


def _plan(n: int = 2):
    from cluster.plan import Node, PlanRequest, make_plan
    return make_plan(PlanRequest(backend="cpu", nodes=(Node("h1", "127.0.0.1", tuple(range(n)), (0, 1)),),
                                 run_dir="/runs/demo-1", cwd="/", worker_cmd=("python", "-m", "wrn.train"),
                                 scheduler_cmd=("python", "-m", "wrn.scheduler"), sched_port=29500))


def _drive(renderer, plan, records):
    """Call a renderer the way the supervisor does."""
    board = RunBoard.from_plan(plan, plan.run_dir,  # its clock: the recorded stream's end
                               stalls=StallPolicy(clock=lambda: records[-1]["time"]))
    renderer.run_started(plan, plan.run_dir, {"chosen": "detected"}, board)
    renderer.process_started("scheduler", None, "h1", 50)
    for rank in range(plan.world_size):
        board.started(board.ranks[rank], records[0]["time"], pid=100 + rank)
        renderer.process_started(f"rank{rank}", rank, "h1", 100 + rank)
    for record in records:
        board.feed(record, record["time"])
        renderer.event("h1", record, event_from(record), board)
    renderer.tick(board)
    renderer.message("warning", "something to look at")
    for rank in range(plan.world_size):
        renderer.process_exited(f"rank{rank}", rank, "h1", 0, None, True)
    renderer.finished(RunSummary(status="succeeded", exit_code=0, run_dir=plan.run_dir, wall_s=12.5,
                                 imgs_per_s=120.0, final_loss=0.33, top1=0.98, replicas_in_sync=True,
                                 checksums={0: "a", 1: "a"}))
    renderer.close()


def _records():
    return [dict(r, host="h1") for r in load("real2")]


def test_rich_renderer_draws_the_dashboard_then_the_summary():
    console = Console(record=True, width=120, height=40, force_terminal=True)
    renderer = RichRenderer(console, min_refresh_s=0.0)
    _drive(renderer, _plan(), _records())
    text = console.export_text()
    assert "run dir /runs/demo-1" in text
    assert "backend CPU (detected): 2 worker(s) on h1" in text
    assert "wrn-launch · demo-1" in text
    assert "imgs/s" in text
    assert "epoch 10 done" in text
    assert "eval after epoch 4: top-1 65.67%" in text  # milestones
    assert "warning: something to look at" in text
    assert "wrn-launch summary" in text
    assert "replicas in sync" in text
    assert "98.00%" in text
    assert renderer.live is None  # the terminal is released


def test_json_renderer_streams_json_lines():
    out = io.StringIO()
    _drive(JsonRenderer(out), _plan(), _records())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = [r["event"] for r in lines]
    assert kinds[0] == "run_started"
    assert kinds[-1] == "summary"
    assert sum(1 for r in lines if r.get("source") == "launcher" and r["event"] == "process_started") == 3
    worker = [r for r in lines if "source" not in r]
    assert len(worker) == len(_records())
    assert all(r["host"] == "h1" for r in worker)
    assert lines[-1]["status"] == "succeeded"
    assert lines[-1]["top1"] == 0.98


def test_plain_renderer_has_no_escape_sequences():
    out = io.StringIO()
    _drive(PlainRenderer(out), _plan(), _records())
    text = out.getvalue()
    assert "\x1b" not in text
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d run dir", text)
    assert "epoch 4/10 step 18" in text
    assert "summary:" in text


def test_live_state_from_plan():
    plan = _plan(2)
    state = RunBoard.from_plan(plan, "/runs/demo-1/", stalls=stall_policy(9.0), t0=5.0)
    assert state.name == "demo-1"
    assert state.backend == "cpu"
    assert state.world_size == 2
    assert [(v.rank, v.host, v.device) for v in state.ranks.values()] == [(0, "h1", 0), (1, "h1", 1)]
    assert state.hosts == ["h1"]
    assert state.stalls.limits(0.0) == (9.0, 18.0)
    assert state.elapsed(7.5) == 2.5


def test_stalled_rank_does_not_count_in_throughput():
    state, last = state_for("ranks64", until_s=60)
    now = last + 1
    assert state.aggregate_imgs_per_s(now) == pytest.approx(
        state.aggregate_imgs_per_s() - state.ranks[37].imgs_per_s)
    text = render(dashboard(state, now, height=30, width=120), 120)
    assert "(63 ranks)" in text
