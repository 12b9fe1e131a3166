"""The monitor and the agent channel on their own: the message table, and a restart's port."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from cluster.plan import Node, PlanRequest, make_plan
from launcher.backends.base import Backend
from launcher.backends.local import LocalBackend
from launcher.backends.ports import reserve_port
from launcher.config import LaunchConfig, SupervisorConfig
from launcher.rundir.files import RunFiles
from launcher.rundir.record import RunRecord, RunRecordWriter
from launcher.session.attempts import RunSession
from launcher.session.inputs import LaunchInputs
from launcher.session.resources import HeldResources
from launcher.supervise.monitor import Monitor
from launcher.supervise.ranks import RunBoard
from launcher.supervise.result import RunState
from launcher.supervise.stalls import StallPolicy
from launcher.ui.renderers import PlainRenderer
from tests.support.launches import FAKE_WORKER_CMD
from tests.support.processes import fake_env
from wrn.contract import Exited, Hello, Line, parse_message


def test_only_known_message_types_are_parsed():
    assert parse_message({"type": "hello", "pid": 7}) == Hello(None, 7)
    assert parse_message({"type": "line", "name": "rank0", "rank": 0, "line": "x"}) == \
        Line("rank0", 0, "x")
    exited = parse_message({"type": "exited", "name": "rank0", "exit_code": "9", "time": True})
    assert exited == Exited("rank0", None, None, None, None, None, None)  # wrong types: missing
    for unknown in ("agent_eof", "fail_with", "__init__", "", None, 3):
        assert parse_message({"type": unknown}) is None


class _NoisyAgent(LocalBackend):
    """The real agent, preceded by messages of types the launcher does not handle (one named
    like an internal method of the monitor)."""

    def agent_cmd(self, host: str) -> list[str]:
        code = ("import json, runpy\n"
                "for t in ('agent_eof', 'fail_with', 'bogus'):\n"
                "    print(json.dumps({'type': t, 'host': 'x'}), flush=True)\n"
                "runpy.run_module('launcher.agent', run_name='__main__')\n")
        return [sys.executable, "-c", code]


def test_an_unknown_message_type_is_logged_and_ignored(tmp_path, monkeypatch):
    for key, value in fake_env(steps=2).items():
        monkeypatch.setenv(key, value)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    plan = make_plan(PlanRequest(backend="cpu", nodes=(Node("h1", "127.0.0.1", (0,), (0,)),),
                                 run_dir=str(run_dir), cwd=str(tmp_path),
                                 worker_cmd=tuple(FAKE_WORKER_CMD.split())))
    files = RunFiles(run_dir)
    try:
        options = SupervisorConfig(grace=1)
        result = Monitor(plan, files, PlainRenderer(io.StringIO()), _NoisyAgent(), options,
                         RunRecord(), RunRecordWriter(run_dir),
                         RunBoard(stalls=StallPolicy(options))).run()
    finally:
        files.close()
    assert result.state is RunState.SUCCEEDED
    assert result.failures == {}
    log = (run_dir / "logs" / "agent-h1.log").read_text()
    for name in ("agent_eof", "fail_with", "bogus"):
        assert f"debug: ignored an agent message of unknown type '{name}'" in log


class _Master(Backend):
    """A backend whose master host reports the first ports asked for as taken."""

    local = False

    def __init__(self, taken: int) -> None:
        self.asked: list[tuple[str, int]] = []
        self.taken = taken

    def port_free(self, host: str, port: int) -> bool:
        self.asked.append((host, port))
        return len(self.asked) > self.taken


def _prepared(backend: Backend, tmp_path: Path, **config) -> RunSession:
    nodes = (Node("master", "10.0.0.1", (0,), (0,)), Node("other", "10.0.0.2", (0,), (0,)))
    port = reserve_port(None)
    request = PlanRequest(backend="cpu", nodes=nodes, run_dir=str(tmp_path), cwd=str(tmp_path),
                          worker_cmd=("w",), scheduler_cmd=("s",), sched_port=port.port)
    inputs = LaunchInputs(LaunchConfig(**config), None, request, tmp_path, True)
    return RunSession(inputs, HeldResources(backend, port), PlainRenderer(io.StringIO()))


def test_a_restart_rechecks_its_scheduler_port_on_the_master_host(tmp_path):
    backend = _Master(taken=2)
    prepared = _prepared(backend, tmp_path)
    try:
        first = prepared.plan(0).scheduler
        assert prepared.renew_port() is None
        assert [host for host, _ in backend.asked] == ["master"] * 3
        assert prepared.plan(1).scheduler == ("10.0.0.1", backend.asked[-1][1])
        assert first[0] == "10.0.0.1"
        assert "--resume-from" in prepared.plan(1).worker(0).argv
        assert "--resume-from" not in prepared.plan(0).worker(0).argv
    finally:
        prepared.held.port.release()


def test_a_restart_with_an_explicit_port_taken_on_the_master_says_so(tmp_path):
    probe = reserve_port(None)
    port = probe.port
    probe.release()
    prepared = _prepared(_Master(taken=5), tmp_path, port=port)
    try:
        problem = prepared.renew_port()
        assert problem is not None
        assert "master" in problem
    finally:
        if prepared.held.port is not None:
            prepared.held.port.release()
