"""The pieces of the SSH launch path one by one: target resolution, command strings, probe
parsing and judging, complete per-host plans. The pieces that need the real test sshd (SFTP,
connecting, copying outputs back) are in e2e/test_ssh_parts.py."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from cluster.errors import PlanError
from cluster.hosts import HostSpec
from cluster.plan import Node, PlanRequest, make_plan
from launcher.backends.preflight import (
    HostCheck,
    failure_message,
    judge,
    parse_probe,
    print_table,
    probe_command,
    raise_if_failed,
)
from launcher.backends.ssh import SSHBackend, host_device_ids, remote_hosts
from launcher.backends.sshclient import RemoteHost, SSHTarget, agent_command, resolve_target
from launcher.config import SSHSettings
from launcher.rundir.record import masked_plan
from launcher.rundir.remote import output_fetcher
from wrn_launch import clash_message

WANT = {"python": "3.11.9", "mindspore": "2.10.0"}


def _host(name="h1", python="/py", workdir="/proj", cwd="/launch dir") -> RemoteHost:
    return RemoteHost(name, SSHTarget(name, name, 22, "u"), python, workdir, cwd)


def test_resolve_target_honours_ssh_config(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text("Host node1\n  HostName 10.0.0.5\n  User alice\n  Port 2200\n"
                   "  IdentityFile ~/.ssh/k1\n  IdentitiesOnly yes\n  UserKnownHostsFile /tmp/kh\n")
    t = resolve_target("node1", SSHSettings(config_path=str(cfg)))
    assert (t.hostname, t.user, t.port, t.identities_only, t.known_hosts) == \
        ("10.0.0.5", "alice", 2200, True, "/tmp/kh")
    assert t.key_files[0].endswith("/.ssh/k1")
    assert t.label == "alice@10.0.0.5:2200"
    over = resolve_target("node1", SSHSettings(config_path=str(cfg), known_hosts="/x"), "bob", 23)
    assert (over.user, over.port, over.known_hosts) == ("bob", 23, "/x")
    plain = resolve_target("other", SSHSettings(config_path=str(tmp_path / "none")))
    assert (plain.hostname, plain.port, plain.identities_only) == ("other", 22, False)


def test_commands_are_quoted_and_hold_no_secret():
    host = _host()
    assert agent_command(host) == ("cd '/launch dir' && exec env PYTHONSAFEPATH=1 PYTHONPATH=/proj "
                                   "PYTHONUNBUFFERED=1 /py -P -m launcher.agent")
    cmd = probe_command(host, "cpu", "BUILTIN", 29501)
    assert cmd.startswith("cd '/launch dir' && exec env PYTHONSAFEPATH=1 PYTHONPATH=/proj /py - '")
    assert "29501" in cmd
    assert SSHBackend({"h1": host}, {}).agent_cmd("h1") == ["/py", "-P", "-m", "launcher.agent"]


def test_commands_without_workdir_use_the_hosts_installed_copy():
    installed = _host(workdir=None)
    assert agent_command(installed) == ("cd '/launch dir' && exec env PYTHONSAFEPATH=1 "
                                        "PYTHONUNBUFFERED=1 /py -P -m launcher.agent")
    assert probe_command(installed, "cpu", "BUILTIN", None).startswith(
        "cd '/launch dir' && exec env PYTHONSAFEPATH=1 /py - '")


def test_parse_probe():
    assert parse_probe('noise\n@wrn-preflight {"python": "3.11.9"}\n') == {"python": "3.11.9"}
    assert parse_probe("@wrn-preflight {broken") is None
    assert parse_probe("") is None


def test_judge_reports_every_problem():
    check = HostCheck("h1")
    judge(check, {"python": "3.10.1", "mindspore": None, "import": "ModuleNotFoundError: wrn",
                  "data": "data_path: /d has no train/", "devices": [0], "cpus": [],
                  "port_free": False}, WANT, _host(), [0, 1], 29501)
    text = " ".join(check.problems)
    for needle in ("python 3.10.1", "mindspore missing", "does not import", "data_path",
                   "device(s) [1] not present", "port 29501 is in use", "no usable CPU"):
        assert needle in text
    good = HostCheck("h2")
    judge(good, {**WANT, "import": None, "data": None, "devices": None, "cpus": [0, 1],
                 "port_free": True}, WANT, _host(), None, 29501)
    assert good.ok
    assert good.cpus == [0, 1]


WANT_PROJECT = {**WANT, "wrn-launch": "0.1.0"}
REPORT = {**WANT, "import": None, "data": None, "devices": None, "cpus": [0], "port_free": None}
INSTALLED = {"version": "0.1.0", "location": "/opt/venv/lib/python3.11/site-packages", "installed": True}


def test_judge_accepts_an_installed_wrn_launch_and_says_so():
    check = HostCheck("h1")
    judge(check, {**REPORT, "project": INSTALLED}, WANT_PROJECT, _host(workdir=None), None, None)
    assert check.ok
    assert check.project == "0.1.0 installed\n/opt/venv/lib/python3.11/site-packages"


def test_judge_accepts_a_workdir_checkout_and_says_so():
    check = HostCheck("h1")
    judge(check, {**REPORT, "project": {"version": "0.1.0", "location": "/srv/wrn", "installed": False}},
          WANT_PROJECT, _host(workdir="/srv/wrn/"), None, None)
    assert check.ok
    assert check.project == "0.1.0 workdir\n/srv/wrn"


def test_judge_refuses_another_version():
    check = HostCheck("h1")
    judge(check, {**REPORT, "project": {**INSTALLED, "version": "0.0.9"}}, WANT_PROJECT,
          _host(workdir=None), None, None)
    assert not check.ok
    assert "wrn-launch 0.0.9 from /opt/venv" in check.problems[0]
    assert "but the launcher is 0.1.0; install wrn-launch 0.1.0 for /py there" in check.problems[0]


def test_judge_refuses_a_missing_or_clashing_wrn_launch():
    missing = HostCheck("h1")
    judge(missing, {**REPORT, "import": "ModuleNotFoundError: No module named 'wrn_launch'"},
          WANT_PROJECT, _host(workdir=None), None, None)
    assert ("does not import there (ModuleNotFoundError: No module named 'wrn_launch') installed "
            "for /py; install wrn-launch 0.1.0") in missing.problems[0]
    clash = HostCheck("h1")
    message = clash_message(["'cluster' is also installed by cluster 1.4.1"], "/py")  # as the probe writes it
    judge(clash, {**REPORT, "clashes": message},
          WANT_PROJECT, _host(workdir=None), None, None)
    assert len(clash.problems) == 1
    assert "clash with other Python code for /py" in clash.problems[0]
    assert "'cluster' is also installed by cluster 1.4.1" in clash.problems[0]


def test_failure_message_table_and_raise():
    checks = [HostCheck("a", "u@a:22", python="3.11.9", cpus=[0]),
              HostCheck("b", "u@b:22", problems=["boom"])]
    assert failure_message(checks[:1]) == ""
    assert failure_message(checks) == ("pre-flight failed on 1 of 2 host(s), nothing was started: "
                                       "[b] boom")
    with pytest.raises(PlanError, match=r"\[b\] boom"):
        raise_if_failed(checks)
    out = io.StringIO()
    print_table(checks, out)
    assert "pre-flight" in out.getvalue()
    assert "FAILED: boom" in out.getvalue()
    assert "wrn-launch" in out.getvalue()


def test_remote_hosts_and_complete_per_host_plans():
    specs = [HostSpec("a", 1), HostSpec("b", 2, python="/other/py", workdir="/w", devices=(2, 3))]
    hosts = remote_hosts(specs, SSHSettings(config_path="/nonexistent"), "/cwd")
    assert hosts["a"].python == sys.executable
    assert hosts["b"].python == "/other/py"
    assert hosts["a"].workdir == str(Path(__file__).resolve().parents[2])  # this checkout
    assert hosts["b"].workdir == "/w"
    assert host_device_ids(specs[1]) == (2, 3)
    assert host_device_ids(specs[0]) == (0,)
    req = PlanRequest(backend="cpu", nodes=(Node("a", "10.0.0.1", (0,), (0,), python=sys.executable,
                                                 pythonpath="/proj"),
                                            Node("b", "10.0.0.2", (2, 3), (0, 1), python="/other/py",
                                                 pythonpath="/w")),
                      run_dir="/r", cwd="/cwd", worker_cmd=(sys.executable, "-m", "wrn.train"),
                      scheduler_cmd=(sys.executable, "-m", "wrn.scheduler"), sched_port=29501,
                      extra_env={"API_KEY": "s3cret"}, python=sys.executable)
    plan = make_plan(req)
    rank2 = plan.worker(2)
    assert rank2.argv[0] == "/other/py"
    assert rank2.env["PYTHONPATH"] == "/w"
    assert rank2.env["MS_SCHED_HOST"] == "10.0.0.1"
    assert plan.worker(0).argv[0] == sys.executable
    assert plan.worker(0).env["PYTHONPATH"] == "/proj"
    masked = masked_plan(plan.to_dict())
    assert all(p["env"]["API_KEY"] == "***" for p in masked["processes"])
    assert plan.to_dict()["processes"][0]["env"]["API_KEY"] == "s3cret"  # the plan itself is intact


def test_a_run_dir_elsewhere_on_the_hosts():
    req = PlanRequest(backend="cpu", nodes=(Node("a", "10.0.0.1", (0,), (0,)),
                                            Node("b", "10.0.0.2", (0,), (0,), run_dir="/there")),
                      run_dir="/r", cwd="/cwd", worker_cmd=(sys.executable, "-m", "wrn.train"),
                      scheduler_cmd=None, sched_port=29501, resume=True)
    plan = make_plan(req)
    worker = plan.worker(1)
    assert "/there/config.yaml" in worker.argv
    assert worker.env["WRN_RUN_DIR"] == "/there"
    assert worker.argv[-2:] == ("--resume-from", "/there/checkpoints")
    assert "/r/config.yaml" in plan.worker(0).argv
    assert output_fetcher(plan, req.nodes, Path("/r"), None, {"a": "shared"}) is None


def test_the_run_dir_check_accepts_a_non_empty_folder_only_when_resuming():
    from launcher.backends.preflight import run_dir_problem

    old = {"exists": True, "dir": True, "count": 7, "names": ["a", "b", "c", "d"], "writable": True}
    assert "is not empty (7 entries: a, b, c, d, ...)" in run_dir_problem(old, "/r", resume=False)
    assert run_dir_problem(old, "/r", resume=True) is None
    assert run_dir_problem({"exists": True, "dir": True, "count": 0, "writable": True}, "/r", False) is None
    assert run_dir_problem({"exists": False, "dir": False, "ancestor": "/", "writable": True}, "/r", False) is None
    assert "not writable" in run_dir_problem({**old, "writable": False}, "/r", resume=True)
    assert "cannot be checked" in run_dir_problem({"error": "PermissionError: denied"}, "/r", False)
