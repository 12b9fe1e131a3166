"""The node agent (``python -m launcher.agent``) over its JSON-lines protocol, with real
processes: started/exited messages, line forwarding, stop, stdin EOF, PDEATHSIG."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.processes import pid_alive, wait_for

PY = sys.executable


def proc(name, code, rank=None, **extra):
    role = "scheduler" if rank is None else "worker"
    return {"name": name, "role": role, "rank": rank, "argv": [PY, "-c", code], "env": extra.pop("env", {}),
            "unset": extra.pop("unset", []), "cwd": str(REPO), "log": f"logs/{name}.log", **extra}


class AgentUnderTest:
    """Starts the agent, feeds it a spec, collects its messages on a thread."""

    def __init__(self, processes, tmp: Path, grace=1.0):
        # TMPDIR: the agent's stacks folder goes under the test's own folder, so an agent the
        # test SIGKILLs (which cleans up nothing) leaves nothing in /tmp either.
        env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp))
        self.popen = subprocess.Popen([PY, "-m", "launcher.agent"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env, cwd=str(REPO))
        self.messages: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.send({"version": 1, "grace": grace, "processes": processes})

    def _read(self):
        for line in self.popen.stdout:
            self.messages.put(json.loads(line))

    def send(self, obj):
        self.popen.stdin.write((json.dumps(obj) + "\n").encode())
        self.popen.stdin.flush()

    def until(self, pred, timeout=10.0):
        """Messages up to and including the first one matching ``pred``."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            self.seen.append(msg)
            if pred(msg):
                return msg

    def all_until_done(self, timeout=10.0):
        self.until(lambda m: m["type"] == "done", timeout)
        assert self.popen.wait(timeout) == 0
        return self.seen

    def close(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture
def agents(tmp_path):
    made = []

    def make(*a, **kw):
        made.append(AgentUnderTest(*a, tmp=tmp_path, **kw))
        return made[-1]
    yield make
    for agent in made:
        agent.close()


def of(messages, kind, name=None):
    return [m for m in messages if m["type"] == kind and (name is None or m.get("name") == name)]


def test_started_lines_exited_done(agents):
    code = "print('hello'); print('@wrn {\"v\":1}'); import sys; print('bye', flush=True); sys.exit(3)"
    agent = agents([proc("rank0", code, rank=0), proc("rank1", "print('one')", rank=1)])
    msgs = agent.all_until_done()
    assert msgs[0]["type"] == "hello"
    assert msgs[0]["pid"] == agent.popen.pid
    started = of(msgs, "started", "rank0")[0]
    assert started["rank"] == 0
    assert started["pgid"] == started["pid"]  # own process group
    assert [m["line"] for m in of(msgs, "line", "rank0")] == ["hello", '@wrn {"v":1}', "bye"]
    exited = of(msgs, "exited", "rank0")[0]
    assert (exited["exit_code"], exited["signal"], exited["pid"]) == (3, None, started["pid"])
    assert msgs.index(exited) > max(msgs.index(m) for m in of(msgs, "line", "rank0"))  # last lines first
    assert of(msgs, "exited", "rank1")[0]["exit_code"] == 0
    assert msgs[-1]["type"] == "done"


def test_signal_exit_env_unset_and_cores(agents, monkeypatch):
    monkeypatch.setenv("LEFTOVER", "x")
    code = ("import os, signal; print(os.environ.get('A'), os.environ.get('LEFTOVER'), "
            "sorted(os.sched_getaffinity(0)), flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    agent = agents([proc("rank0", code, rank=0, env={"A": "1"}, unset=["LEFTOVER"], cpus=[0])])
    msgs = agent.all_until_done()
    assert of(msgs, "line")[0]["line"] == "1 None [0]"
    exited = of(msgs, "exited")[0]
    assert (exited["exit_code"], exited["signal"]) == (-9, "SIGKILL")


def test_unstartable_process_is_reported(agents):
    spec = proc("rank0", "", rank=0)
    spec["argv"] = ["/nonexistent/python"]
    msgs = agents([spec]).all_until_done()
    exited = of(msgs, "exited")[0]
    assert exited["exit_code"] == 127
    assert exited["pid"] is None
    assert "nonexistent" in exited["error"]


def test_stop_command_terms_then_kills(agents):
    polite = "import time; print('up', flush=True); time.sleep(60)"
    stubborn = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + polite
    agent = agents([proc("rank0", stubborn, rank=0), proc("rank1", polite, rank=1)], grace=5.0)
    agent.until(lambda m: len(of(agent.seen, "line")) == 2)  # both are up (SIGTERM ignored)
    t0 = time.monotonic()
    agent.send({"cmd": "stop", "grace": 0.5})
    msgs = agent.all_until_done()
    took = time.monotonic() - t0
    assert of(msgs, "stopping")[0]["grace"] == 0.5
    assert of(msgs, "exited", "rank1")[0]["signal"] == "SIGTERM"
    assert of(msgs, "exited", "rank0")[0]["signal"] == "SIGKILL"  # ignored SIGTERM: killed after grace
    assert 0.5 <= took < 3.0


def test_stdin_eof_kills_process_groups(agents, tmp_path):
    # The worker starts a grandchild in its own group; closing the agent's stdin (the launcher is
    # gone) must end both.
    pidfile = tmp_path / "child.pid"
    code = (f"import subprocess, sys, time; "
            f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pidfile)!r}, 'w').write(str(c.pid)); print('up', flush=True); time.sleep(60)")
    agent = agents([proc("rank0", code, rank=0)])
    started = agent.until(lambda m: m["type"] == "started")
    agent.until(lambda m: m["type"] == "line")
    child = int(pidfile.read_text())
    assert pid_alive(started["pid"])
    assert pid_alive(child)
    agent.popen.stdin.close()
    msgs = agent.all_until_done()
    assert "stdin EOF" in of(msgs, "stopping")[0]["reason"]
    assert of(msgs, "exited")[0]["signal"] == "SIGTERM"
    assert wait_for(lambda: not pid_alive(started["pid"]) and not pid_alive(child), 5)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_agent_signal_stops_children(agents, sig):
    agent = agents([proc("rank0", "import time; print('up', flush=True); time.sleep(60)", rank=0)])
    started = agent.until(lambda m: m["type"] == "started")
    agent.until(lambda m: m["type"] == "line")
    agent.popen.send_signal(sig)
    msgs = agent.all_until_done()
    assert signal.Signals(sig).name in of(msgs, "stopping")[0]["reason"]
    assert not pid_alive(started["pid"])


def test_pdeathsig_when_agent_is_sigkilled(agents):
    # SIGKILL cannot be caught, so the agent cleans up nothing; PR_SET_PDEATHSIG makes the
    # kernel kill its children anyway.
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(60)")
    agent = agents([proc("rank0", code, rank=0), proc("rank1", code, rank=1)])
    pids = [agent.until(lambda m: m["type"] == "started")["pid"] for _ in range(2)]
    agent.until(lambda m: m["type"] == "line")
    assert all(pid_alive(p) for p in pids)
    agent.popen.kill()
    agent.popen.wait()
    assert wait_for(lambda: not any(pid_alive(p) for p in pids), 3), "children outlived a SIGKILLed agent"


def test_bad_spec_and_unknown_command(agents):
    bad = subprocess.run([PY, "-m", "launcher.agent"], input=b"[1, 2]\n", capture_output=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=20)
    lines = [json.loads(x) for x in bad.stdout.splitlines()]
    assert bad.returncode == 2
    assert lines[0]["type"] == "warning"
    assert lines[-1]["type"] == "done"
    agent = agents([proc("rank0", "import time; time.sleep(1)", rank=0)])
    agent.send({"cmd": "dance"})
    msgs = agent.all_until_done()
    assert "unknown command" in of(msgs, "warning")[0]["message"]


def test_standby_process_reads_go_and_others_read_nothing(agents):
    # a standby process gets a pipe as stdin: "go" reaches it once; any other process's stdin
    # is /dev/null
    code = "import sys; print(repr(sys.stdin.readline()), repr(sys.stdin.readline()), flush=True)"
    agent = agents([proc("rank0", code, rank=0, standby=True), proc("rank1", code, rank=1)])
    assert agent.until(lambda m: m["type"] == "line")["name"] == "rank1"
    agent.send({"cmd": "go"})
    msgs = agent.all_until_done()
    lines = {m["name"]: m["line"] for m in of(msgs, "line")}
    assert lines == {"rank0": "'go\\n' ''", "rank1": "'' ''"}
    assert {m["exit_code"] for m in of(msgs, "exited")} == {0}


def test_stopping_a_standby_closes_its_stdin(agents):
    # a stop closes the standby's stdin with nothing written (it is not needed), besides SIGTERM
    code = ("import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); print(repr(sys.stdin.readline()), flush=True)")
    agent = agents([proc("rank0", code, rank=0, standby=True)], grace=5.0)
    agent.until(lambda m: m["type"] == "line")
    t0 = time.monotonic()
    agent.send({"cmd": "stop", "grace": 5.0})
    msgs = agent.all_until_done()
    assert of(msgs, "line")[-1]["line"] == "''"
    assert of(msgs, "exited")[0]["exit_code"] == 0
    assert time.monotonic() - t0 < 3.0  # it ended on the closed stdin, not after the grace
