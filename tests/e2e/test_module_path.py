"""Files in the launch directory cannot shadow modules of the project or of the standard library
in the processes a launch starts: agents, workers and the pre-flight probe run with ``-P`` /
PYTHONSAFEPATH=1 (a shared, writable launch directory is someone else's code otherwise)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.processes import fake_env

SHADOW = "open({marker!r}, 'a').write(__name__ + '\\n')\nraise SystemExit(97)\n"


def _plant(folder, marker, *modules: str) -> None:
    """A module file (``json``) or a package (``launcher/``) per name, each recording that it
    was imported and exiting 97."""
    for name in modules:
        if name.endswith("/"):
            (folder / name).mkdir()
            (folder / name / "__init__.py").write_text(SHADOW.format(marker=str(marker)))
        else:
            (folder / f"{name}.py").write_text(SHADOW.format(marker=str(marker)))


def test_a_local_agent_ignores_packages_in_the_launch_directory(runs, tmp_path):
    marker = tmp_path / "imported.txt"
    _plant(tmp_path, marker, "launcher/", "wrn/", "cluster/")  # the launcher runs from a repo
    run = runs(steps=2)
    assert run.wait() == 0, run.err[-2000:]
    assert not marker.exists(), marker.read_text()
    assert run.record["status"] == "succeeded"


def test_the_default_commands_keep_the_launch_directory_off_the_module_path(tmp_path):
    out = subprocess.run([sys.executable, "-P", "-m", "launcher.cli", "--devices", "2", "--backend",
                          "cpu", "--dry-run", "--json"], cwd=tmp_path, env=fake_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)["plan"]
    modules = sorted(p["argv"][1:4][-1] for p in plan["processes"]
                     if p["argv"][1:3] == ["-P", "-m"])
    assert modules == ["wrn.scheduler", "wrn.train", "wrn.train"], plan["processes"]


def test_the_ssh_probe_agents_and_port_check_ignore_modules_in_the_launch_directory(
        ssh_runs, sshd, tmp_path):
    marker = tmp_path / "imported.txt"
    # json: imported by the pre-flight probe and the agent; launcher/: the agent's own package
    _plant(tmp_path, marker, "json", "launcher/", "wrn/")
    hosts = "127.0.0.1 slots=1\n127.0.0.2 slots=1\n"
    run = ssh_runs(sshd, hosts, fake={"steps": 2, "connect": 1})
    assert run.wait() == 0, run.err[-2000:]
    assert not marker.exists(), marker.read_text()
    assert run.record["status"] == "succeeded"
