"""The run directory on other hosts: the pre-flight checks its path there (creatable, writable,
empty unless resuming) and whether the host serves SFTP; a host without SFTP gets its files
over exec channels. Real sshd, fake workers."""

from __future__ import annotations

import pytest

from tests.support.processes import wait_for

A, B = "127.0.0.1", "127.0.0.2"
TWO_HOSTS = f"{A} slots=1\n{B} slots=1\n"


@pytest.fixture
def runs(ssh_runs):
    return ssh_runs


def _refused(run, *needles: str) -> str:
    assert run.wait() == 2, run.out + run.err
    message = run.err.strip().splitlines()[-1]
    assert message.startswith("wrn-launch: error: pre-flight failed"), run.err
    for needle in needles:
        assert needle in message, message
    assert "Traceback" not in run.err
    assert not run.dir.exists()  # nothing made here either
    return message


@pytest.mark.slow  # among the longest of the fast tier: keeps `make test-fast` under 3 minutes
def test_a_host_without_sftp_gets_its_files_over_exec_channels(runs, sshd_without_sftp, tmp_path):
    remote = tmp_path / "elsewhere" / "run"  # not shared: config goes there, outputs come back
    run = runs(sshd_without_sftp, TWO_HOSTS, "--remote-run-dir", str(remote),
               fake={"steps": 2, "epochs": 2, "connect": 1})
    assert run.wait() == 0, run.out + run.err
    assert "Traceback" not in run.err
    assert (remote / "config.yaml").read_text() == (run.dir / "config.yaml").read_text()
    for name in ("checkpoints/fake-e1.ckpt", "checkpoints/fake-e2.ckpt", "eval.json"):
        assert (run.dir / name).read_bytes() == (remote / name).read_bytes(), name
    assert " exec " in run.err  # the pre-flight table's files column
    assert run.record["summary"]["top1"] == 0.95
    assert wait_for(run.all_gone, 5)


def test_a_non_empty_remote_run_dir_is_refused_unless_resuming(runs, sshd, tmp_path):
    remote = tmp_path / "old" / "run"
    (remote / "checkpoints").mkdir(parents=True)
    (remote / "checkpoints" / "fake-e9.ckpt").write_bytes(b"another run's")
    run = runs(sshd, TWO_HOSTS, "--remote-run-dir", str(remote), fake={"steps": 2})
    message = _refused(run, f"the run directory {remote} there is not empty", "checkpoints",
                       "--remote-run-dir")
    assert f"[{A}]" in message and f"[{B}]" in message


def test_a_remote_run_dir_that_cannot_be_created_is_a_preflight_error(runs, sshd, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    remote = blocker / "run"
    run = runs(sshd, TWO_HOSTS, "--remote-run-dir", str(remote), fake={"steps": 2})
    _refused(run, f"cannot create the run directory {remote} there", f"{blocker} is not a writable "
             "folder")
