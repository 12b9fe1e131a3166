"""The Slurm launcher's pure parts: what an allocation's variables mean, the choice of
launcher, bad input to the Slurm flags and ``wrn-launch sbatch`` (exit 2, one message, nothing
submitted). The real cluster is in tests/e2e/test_slurm.py."""

from __future__ import annotations

import pytest

from launcher.backends.slurm import allocation_devices, job_id, srun_argv, tasks_per_node
from launcher.cli import main
from launcher.config import LaunchConfig, LaunchError


def test_tasks_per_node_expands_slurms_compact_form():
    assert tasks_per_node("2(x3),1", 4) == [2, 2, 2, 1]
    assert tasks_per_node("4", 1) == [4]
    assert tasks_per_node("2(x3)", 2) == []          # not the node count: not trusted
    assert tasks_per_node("x", 1) == []


def test_devices_per_node_from_the_allocation():
    assert allocation_devices({"SLURM_GPUS_ON_NODE": "4"}, 2, "gpu") == [4, 4]
    assert allocation_devices({"SLURM_GPUS_ON_NODE": "4", "SLURM_NTASKS_PER_NODE": "2"}, 2,
                              "cpu") == [2, 2]
    assert allocation_devices({"SLURM_TASKS_PER_NODE": "3,1"}, 2, "cpu") == [3, 1]
    assert allocation_devices({}, 3, "cpu") == [1, 1, 1]


def test_the_agent_step_overlaps_the_job_on_one_node():
    argv = srun_argv("n2", ["python", "-m", "launcher.agent"])
    assert argv[0] == "srun" and "--overlap" in argv and "--nodes=1" in argv
    assert argv[argv.index("-w") + 1] == "n2" and argv[-3:] == ["python", "-m", "launcher.agent"]


def test_auto_launcher_is_slurm_only_inside_an_allocation_without_hosts_or_devices():
    inside = {"SLURM_JOB_ID": "7"}
    assert job_id(inside) == "7" and job_id({}) is None
    assert LaunchConfig().slurm(inside)
    assert not LaunchConfig().slurm({})
    assert not LaunchConfig(devices="2").slurm(inside)
    assert not LaunchConfig(hosts="a:1").slurm(inside)
    assert not LaunchConfig(launcher="local").slurm(inside)
    assert LaunchConfig(launcher="slurm").slurm({})


@pytest.mark.parametrize("fields, flag", [
    ({"launcher": "pbs"}, "--launcher"),
    ({"launcher": "slurm", "hosts": "a:1"}, "--launcher slurm"),
    ({"launcher": "ssh"}, "--launcher ssh"),
    ({"launcher": "slurm", "devices": "2"}, "--launcher slurm"),
    ({"devices_per_node": 0}, "--devices-per-node"),
    ({"devices_per_node": 2, "devices": "2"}, "--devices-per-node"),
])
def test_contradicting_launcher_flags_are_one_error(fields, flag):
    with pytest.raises(LaunchError, match=flag):
        LaunchConfig(**fields)


def test_slurm_launch_outside_an_allocation_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["--launcher", "slurm", "--dry-run", "--backend", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "SLURM_JOB_ID" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--nodes", "2", "--", "--hosts", "a:1"], "--hosts"),
    (["--nodes", "2", "--", "--devices", "2"], "--devices-per-node"),
    (["--nodes", "2", "--", "--run-dir", "x", "--name", "y"], "--run-dir and --name"),
    (["--nodes", "2", "--", "--set", "lr=banana"], "lr"),
    # a line break would end the #SBATCH line and run the rest as a command of the job
    (["--nodes", "2", "--partition", "gpu\nrm -rf ~", "--"], "--partition"),
    (["--nodes", "2", "--time", "1:00:00\rx", "--"], "--time"),
    (["--nodes", "2", "--account", "a\x00b", "--"], "--account"),
    (["--nodes", "2", "--sbatch-arg=--mem=1G\ntouch /tmp/x", "--"], "--sbatch-arg"),
])
def test_bad_sbatch_input_exits_2_before_anything_is_written(tmp_path, capsys, monkeypatch,
                                                             args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["sbatch", "--no-submit", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not any(tmp_path.rglob("job.sbatch"))


def test_sbatch_nodes_must_be_a_positive_number(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["sbatch", "--nodes", "\u00b2", "--no-submit"])
    assert exit_.value.code == 2
