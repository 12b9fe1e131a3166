"""``launcher.standby.Standby`` on the messages its agents send (no process is started here;
the real thing runs in tests/e2e/test_standby.py and test_ssh_e2e.py)."""

from __future__ import annotations

from types import SimpleNamespace

from launcher.agent.handle import Inbound
from launcher.config import SupervisorConfig
from launcher.supervise.standby import Standby, standby_process
from wrn.contract import Exited, Line, StandbyReady, Step, format_event


class Messages:
    def __init__(self):
        self.said = []

    def __call__(self, level, text):
        self.said.append((level, text))


class Agent:
    """What a standby uses of an ``AgentHandle``: commands sent are kept (as written on the wire)."""

    alive, popen = True, None

    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message.to_dict())

    def kill(self):
        pass


def _standby(**options):
    procs = [SimpleNamespace(role="scheduler", rank=None), SimpleNamespace(role="worker", rank=0),
             SimpleNamespace(role="worker", rank=1)]
    say = Messages()
    standby = Standby(SimpleNamespace(processes=procs), SimpleNamespace(local=False),
                      SupervisorConfig(**options), 2, say)
    standby.agents = {"h": Agent()}
    return standby, say


def _line(rank, text):
    return Inbound("message", "h", Line(f"rank{rank}", rank, text))


def test_ready_once_every_worker_said_standby_and_held_in_order():
    standby, ui = _standby()
    items = [_line(0, "data: index"), _line(0, format_event(StandbyReady(rank=0, setup_seconds=4.0)))]
    for item in items:
        standby.inbox.put(item)
    standby.tick(0.0)
    assert standby.entry["state"] == "starting"
    standby.inbox.put(_line(1, format_event(StandbyReady(rank=1, setup_seconds=5.0))))
    assert standby.tick(0.0)
    assert standby.entry["state"] == "ready" and standby.entry["ready_s"] >= 0
    assert standby.held == items + [standby.held[-1]]
    assert standby.usable
    assert "is ready" in ui.said[-1][1]
    assert standby.release() and standby.agents["h"].sent == [{"cmd": "go"}]
    assert standby.entry["state"] == "used"


def test_a_standby_worker_that_ends_fails_it_with_its_last_output():
    standby, ui = _standby()
    standby.inbox.put(_line(1, "RuntimeError: the cluster could not start"))
    standby.inbox.put(Inbound("message", "h", Exited("rank1", 1, 9, 1, None, None, 0.0)))
    assert standby.tick(0.0)
    assert standby.entry["state"] == "failed"
    assert "rank1 on h ended (exited with code 1)" in standby.problem
    assert "the cluster could not start" in standby.problem
    assert ui.said[-1][0] == "warning" and "start cold" in ui.said[-1][1]
    assert standby.agents["h"].sent[-1]["cmd"] == "stop"  # stopped at once, not kept waiting
    assert not standby.release()  # never told to go
    assert all(m["cmd"] != "go" for m in standby.agents["h"].sent)


def test_a_worker_that_does_not_wait_fails_the_standby():
    standby, _ = _standby()
    standby.inbox.put(_line(0, format_event(Step(rank=0, epoch=1, step=1))))
    standby.tick(0.0)
    assert standby.entry["state"] == "failed" and "did not wait" in standby.problem


def test_a_standby_not_ready_within_the_start_up_limit_fails():
    standby, _ = _standby(startup_timeout=5.0)
    standby.tick(standby.started_at + 1.0)
    assert standby.entry["state"] == "starting"
    standby.tick(standby.started_at + 11.0)  # startup_kill: 2 x --startup-timeout
    assert standby.entry["state"] == "failed" and "not ready 10 s" in standby.problem


def test_only_workers_wait_for_go():
    worker = SimpleNamespace(role="worker", to_dict=lambda: {"env": {"A": "1"}})
    scheduler = SimpleNamespace(role="scheduler", to_dict=lambda: {"env": {}})
    assert standby_process(worker) == {"env": {"A": "1", "WRN_STANDBY": "1"}, "standby": True}
    assert standby_process(scheduler) == {"env": {}}


def test_the_worker_says_standby_then_goes_only_on_go(capsys):
    import io

    from wrn.contract import parse_record as parse
    from wrn.train import wait_as_standby

    assert wait_as_standby(1, 3.25, io.StringIO("go\n")) is True
    assert parse(capsys.readouterr().out.strip()) | {"time": 0} == {
        "v": 1, "event": "standby", "rank": 1, "time": 0, "setup_seconds": 3.25}
    assert wait_as_standby(1, 3.25, io.StringIO("")) is False  # stdin closed: not needed
    assert wait_as_standby(1, 3.25, io.StringIO("stop\n")) is False
