"""Continuing without a lost host, and choosing hosts: two hosts (127.0.0.1 and 127.0.0.2), each
with its own sshd. With ``--max-restarts 1 --min-devices 1`` host B's sshd and every process
under it are killed mid-run: the restart's pre-flight leaves host B out and the run finishes on
host A alone (real MindSpore training), with the change in run.json and in the final summary.
Fake workers for the rest (seconds per test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.launches import SSHRun
from tests.support.processes import has_checkpoint_event, run_processes, wait_for
from tests.support.sshd import hostfile_launch, serve, sshd_binary

pytestmark = pytest.mark.ssh
A, B = "127.0.0.1", "127.0.0.2"
FAKE = {"steps": 3, "epochs": 3, "step_s": 0.2, "connect": 1}


@pytest.fixture
def two_sshds(tmp_path_factory):
    """One sshd on 127.0.0.1 (host A), another on 127.0.0.2 (host B), both taking host A's user
    key; skips without OpenSSH, except under CI=true."""
    binary = sshd_binary()
    if binary is None:
        message = "OpenSSH server (sshd) and ssh-keygen are needed for the multi-host tests"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    serving_a = serve(binary, tmp_path_factory.mktemp("sshd-a"), ("127.0.0.1",))
    a = next(serving_a)
    serving_b = serve(binary, tmp_path_factory.mktemp("sshd-b"), ("127.0.0.2",), own_tmp=True)
    b = next(serving_b)
    (b.dir / "authorized_keys").write_text((a.dir / "user_key.pub").read_text())
    try:
        yield a, b
    finally:
        for serving in (serving_b, serving_a):
            next(serving, None)


def process_tree(root: int) -> set[int]:
    """``root`` and every live process below it (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def both_hosts(tmp_path: Path, a, b) -> tuple[Path, str]:
    """(an ssh config trusting both servers, the hostfile text naming each one's port)."""
    known = tmp_path / "known_hosts"
    known.write_text(a.known_hosts.read_text() + b.known_hosts.read_text())
    return (a.write_config(f"ssh_config_{tmp_path.name}", known_hosts=known),
            f"{A} slots=1 port={a.port}\n{B} slots=1 port={b.port}\n")


def lose_host(server) -> None:
    """Host B disappears: its sshd and every process under it are SIGKILLed."""
    for pid in process_tree(server.popen.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.slow
def test_run_continues_on_host_a_when_host_b_is_lost(tmp_path, two_sshds):
    a, b = two_sshds
    ssh_config, text = both_hosts(tmp_path, a, b)
    hosts = tmp_path / "hosts.txt"
    hosts.write_text(text)
    run_dir = tmp_path / "run"
    argv, env = hostfile_launch(hosts, ssh_config, run_dir, tmp_path, "--max-restarts", "1",
                                "--min-devices", "1", "--grace", "2", "--set", "epoch_size=2",
                                "--set", "eval_interval=0")
    t0 = time.monotonic()
    launcher = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: has_checkpoint_event(run_dir), 300, 0.2), launcher.poll()
        lose_host(b)
        out, err = launcher.communicate(timeout=600)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    print(f"2-host run that lost host B: {time.monotonic() - t0:.1f} s")
    assert launcher.returncode == 0, out[-3000:] + err[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["attempt"] == 2
    assert record["plan"]["hosts"] == ["127.0.0.1"] and record["plan"]["world_size"] == 1
    shrink, = record["shrinks"]
    assert shrink["attempt"] == 2
    assert (shrink["world_size_before"], shrink["world_size_after"]) == (2, 1)
    dropped, = shrink["dropped"]
    assert dropped["host"] == "127.0.0.2" and dropped["devices"] == 1 and dropped["reason"]
    assert record["summary"]["hosts_dropped"]
    assert "hosts left out" in out and "127.0.0.2 (1 device(s)) before attempt 2" in out
    assert "continuing without 127.0.0.2" in out + err
    events = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    resumed = [e for e in events if e["event"] == "start" and e.get("resumed_from")]
    assert [(e["rank"], e["world_size"], e["host"]) for e in resumed] == [(0, 1, "127.0.0.1")]
    assert [e["host"] for e in events if e["event"] == "finish"] == ["127.0.0.1"]
    assert (run_dir / "hostfile").read_text().split()[0] == "127.0.0.1"
    assert "127.0.0.2" not in (run_dir / "hostfile").read_text()
    assert wait_for(lambda: not run_processes(run_dir), 10)


def test_too_few_devices_left_stops_the_run(tmp_path, two_sshds):
    """--min-devices 2 of 2: host B lost -> no restart; the reason names the flag."""
    a, b = two_sshds
    ssh_config, text = both_hosts(tmp_path, a, b)
    run = SSHRun(tmp_path, a, text, "--max-restarts", "1", "--min-devices", "2",
                 config=ssh_config, fake=FAKE)
    try:
        run.wait_event(lambda m: m["event"] == "checkpoint", 30)
        lose_host(b)
        assert run.wait(60) == 1, run.out + run.err
    finally:
        run.kill_everything()
    assert "cannot restart: the pre-flight failed on 127.0.0.2" in run.out + run.err
    assert "fewer than --min-devices 2" in run.out + run.err
    assert wait_for(lambda: not run_processes(run.dir), 10)


@pytest.mark.slow  # among the longest of the fast tier: keeps `make test-fast` under 3 minutes
def test_min_devices_restart_keeps_every_healthy_host(runs_here):
    """A worker killed on a host that is still fine: the restart's pre-flight passes everywhere
    and the run restarts on both hosts; nothing is recorded as left out."""
    run = runs_here("--max-restarts", "1", "--min-devices", "1",
                    fake={**FAKE, "rank": 1, "kill_at": 5})
    assert run.wait(60) == 0, run.out + run.err
    rec = run.record
    assert rec["status"] == "succeeded" and rec["attempt"] == 2
    assert rec["plan"]["hosts"] == [A, B]
    assert "shrinks" not in rec and "hosts left out" not in run.out


def test_include_and_exclude_choose_hosts_of_the_hostfile(runs_here):
    alone = {k: v for k, v in FAKE.items() if k != "connect"}  # one worker: no scheduler
    run = runs_here("--include", B, fake=alone)
    assert run.wait(60) == 0, run.out + run.err
    assert run.record["plan"]["hosts"] == [B]
    run = runs_here("--exclude", f"{A}@{B}", fake=alone)
    assert run.wait(30) == 2
    assert "--exclude" in run.err and "leaves no host to run on" in run.err


@pytest.fixture
def runs_here(ssh_runs, sshd):
    """``runs_here(*args, fake=...)``: fake workers on both hosts of the session sshd."""
    return lambda *args, fake: ssh_runs(sshd, f"{A} slots=1\n{B} slots=1\n", *args, fake=fake)
