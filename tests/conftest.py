"""Fixtures shared by the whole suite, and the markers that follow from them.

Layout:

- ``tests/unit``: code run inside the pytest process (functions, parsers, formatting, and
  MindSpore cells, datasets and checkpoints in-process). No launch, no fake or real worker, no
  MindSpore process, no sshd; a test may start a throwaway interpreter or a light command
  such as ``wrn-launch runs``.
- ``tests/e2e``: real processes: launches with fake or real workers, the command line as a
  user meets it, msrun, the node agent, the ModelZoo scripts, MindSpore in processes of its
  own, and everything that needs the test sshd.
- ``tests/support``: helpers, imported as ``tests.support.<module>``; ``tests/fixtures``: data.

Fixtures:

- ``sshd`` (session): a real OpenSSH server on 127.0.0.1 and 127.0.0.2
  (``tests.support.sshd.SSHD``). Every test that uses it, directly or through another fixture,
  is marked ``ssh``, so ``-m "not ssh"`` leaves them all out.
- ``slurm`` (session): a real two-node Slurm cluster (munged, slurmctld, slurmd n1 and n2 on
  127.0.0.2 and 127.0.0.3; ``tests.support.slurm.Slurm``). Every test that uses it is marked
  ``slurm``, so ``-m "not slurm"`` leaves them out.
- ``runs``: starts ``wrn-launch`` subprocesses with fake workers (``tests.support.launches.Run``).
- ``ssh_runs``: the same over SSH with a hostfile (``SSHRun``). Both run fixtures kill whatever
  a run left behind when the test ends, whatever its outcome.
- ``mindspore_cpu_pynative``: MindSpore on CPU in PyNative mode, for tests that run cells in
  this process (``pytestmark = pytest.mark.usefixtures("mindspore_cpu_pynative")``).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support import slurm as slurm_support
from tests.support.launches import Run, SSHRun, launches
from tests.support.sshd import serve, sshd_binary


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items):
    for item in items:
        if "sshd" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ssh)
        if "slurm" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)
            # one test Slurm at a time (its nodes have fixed addresses): under pytest-xdist
            # (--dist loadgroup) every Slurm test runs in the same worker
            item.add_marker(pytest.mark.xdist_group("slurm"))


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """The test sshd. Without OpenSSH on this machine the tests that need it skip, except under
    CI=true, where they fail."""
    binary = sshd_binary()
    if binary is None:
        message = "OpenSSH server (sshd) and ssh-keygen are needed for the multi-host tests"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: install openssh-server; .ci/run does)")
        pytest.skip(message)
    yield from serve(binary, tmp_path_factory.mktemp("sshd"))


@pytest.fixture(scope="session")
def sshd_without_sftp(sshd, tmp_path_factory):
    """A second test sshd without the SFTP subsystem (a hardened server)."""
    yield from serve(sshd_binary(), tmp_path_factory.mktemp("sshd-nosftp"), sftp=False)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """The test Slurm cluster. Without slurm-wlm and munge on this machine the tests that need
    it skip, except under CI=true, where they fail."""
    bins = slurm_support.slurm_binaries()
    if bins is None:
        message = "Slurm (slurmctld, slurmd, srun, sbatch) and munge are needed for the Slurm tests"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: install slurm-wlm and munge; .ci/run does)")
        pytest.skip(message)
    yield from slurm_support.serve(bins, tmp_path_factory.mktemp("slurm"))


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs mounted for the test (a disk that fills up). Mounting needs root: without
    it the test skips, except under CI=true, where it fails (.ci/run runs as root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
        capture_output=True).returncode == 0
    if not made:
        message = "mounting a small tmpfs needs root"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: run .ci/run as root)")
        pytest.skip(message)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def runs(tmp_path):
    """``runs(*args, **fake)`` starts ``wrn-launch`` with fake workers (see ``Run``)."""
    yield from launches(tmp_path, Run)


@pytest.fixture
def ssh_runs(tmp_path):
    """``ssh_runs(sshd, hosts, *args, ...)`` starts ``wrn-launch --hostfile`` (see ``SSHRun``)."""
    yield from launches(tmp_path, SSHRun)


@pytest.fixture
def mindspore_cpu_pynative():
    """MindSpore on CPU in PyNative mode (imported here so that loading conftest.py stays light)."""
    import mindspore as ms

    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
