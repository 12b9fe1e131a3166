"""A real two-node Slurm cluster on this machine: munged, slurmctld and two slurmd (n1, n2).

``serve`` writes a ``slurm.conf`` into a temporary folder (every path absolute, free ports, the
nodes at their own loopback addresses 127.0.0.2 and 127.0.0.3, ``KillWait`` small so that a
cancelled job's processes get SIGKILL within seconds, a requeued job held 20 s, not 120),
starts munged if none runs, then slurmctld and the two slurmd, waits until ``sinfo`` shows both
nodes idle, yields a ``Slurm``, and stops the daemons it started (munged too, if it started it)
by the pids in their pid files. The ``slurm`` session fixture in ``tests/conftest.py`` runs it
once per test session and decides what a machine without Slurm means (skip; fail under
CI=true).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port, pid_alive, wait_for

NODES = {"n1": "127.0.0.2", "n2": "127.0.0.3"}
#: Seconds between SIGTERM and SIGKILL when a job ends or is requeued (Slurm's default is 30).
KILL_WAIT = 5
#: Seconds a requeued job waits before it may start again (``AuthInfo=cred_expire``).
REQUEUE_WAIT = 20
MUNGE_SOCKET = "/run/munge/munge.socket.2"
MUNGE_PID_FILE = "/run/munge/munged.pid"
BINARIES = ("slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue", "munged")


def slurm_binaries() -> dict[str, str] | None:
    """The daemons and commands the cluster needs, None if any is missing."""
    found = {}
    for name in BINARIES:
        path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}")
                                           if os.access(p, os.X_OK)), None)
        if path is None:
            return None
        found[name] = path
    return found


@dataclass
class Slurm:
    """A running test cluster: its folder, ``slurm.conf`` and the environment that reaches it."""

    dir: Path
    conf: Path
    bins: dict[str, str]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with ``SLURM_CONF`` pointing here and
        no variables of an enclosing job."""
        env = {k: v for k, v in (base if base is not None else os.environ).items()
               if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_"))}
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(self, *argv: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        """A Slurm command (``scontrol``, ``squeue``, ...) against this cluster."""
        return subprocess.run(list(argv), env=self.env(), capture_output=True, text=True,
                              timeout=timeout, **kw)

    def job_state(self, job_id: str) -> str | None:
        """``JobState`` of ``job_id`` from ``scontrol show job`` (None once it is forgotten)."""
        out = self.run("scontrol", "-o", "show", "job", str(job_id)).stdout
        for field in out.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return None

    def wait_state(self, job_id: str, states: tuple[str, ...], timeout: float) -> str | None:
        return wait_for(lambda: (s := self.job_state(job_id)) in states and s, timeout, 0.3)

    def nodes_idle(self) -> bool:
        out = self.run("sinfo", "-h", "-N", "-o", "%N %t").stdout.split("\n")
        states = dict(line.split() for line in out if line.strip())
        return all(states.get(n) == "idle" for n in NODES)


def _conf_text(root: Path, host: str, ports: list[int]) -> str:
    lines = [
        "ClusterName=wrntest", f"SlurmctldHost={host}", "SlurmUser=root", "AuthType=auth/munge",
        f"StateSaveLocation={root}/state", f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmctldLogFile={root}/log/ctld.log", f"SlurmdPidFile={root}/slurmd-%n.pid",
        f"SlurmdSpoolDir={root}/spool-%n", f"SlurmdLogFile={root}/log/d-%n.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobCompType=jobcomp/none",
        "SchedulerType=sched/backfill", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "ReturnToService=2", f"SlurmctldPort={ports[0]}",
        f"KillWait={KILL_WAIT}", "MinJobAge=600", "SchedulerParameters=sched_interval=2",
        "MpiDefault=none", "SlurmctldTimeout=30", "SlurmdTimeout=60",
        # a requeued job waits the step-credential lifetime before it starts again (default 120 s)
        f"AuthInfo=cred_expire={REQUEUE_WAIT}",
    ]
    for (name, addr), port in zip(NODES.items(), ports[1:]):
        lines.append(f"NodeName={name} NodeHostname={host} NodeAddr={addr} Port={port} "
                     f"CPUs=2 RealMemory=10000")
    lines.append(f"PartitionName=debug Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE "
                 f"State=UP")
    return "\n".join(lines) + "\n"


def _start_munge(bins: dict[str, str]) -> bool:
    """munged as the munge user, with a key, unless one already answers on its socket; True
    when it was started here (and is to be stopped after)."""
    if os.path.exists(MUNGE_SOCKET):
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(MUNGE_SOCKET)
                return False
            except OSError:
                pass
    for d in ("/etc/munge", "/run/munge", "/var/log/munge", "/var/lib/munge"):
        os.makedirs(d, exist_ok=True)
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    subprocess.run(["chown", "-R", "munge:munge", "/etc/munge", "/run/munge", "/var/log/munge",
                    "/var/lib/munge"], check=True)
    key.chmod(0o400)
    subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", bins["munged"]], check=True)
    return True


def _stop_by_pid_file(path: Path) -> None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_for(lambda: not pid_alive(pid), 10, 0.1):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def serve(bins: dict[str, str], root: Path) -> Iterator[Slurm]:
    """A fixture body (``yield from serve(...)``): the cluster in ``root``; fails if it does not
    come up within a minute."""
    if os.geteuid() != 0:
        pytest.skip("the test Slurm cluster runs its daemons as root")
    for sub in ("state", "log", *(f"spool-{n}" for n in NODES)):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    host = socket.gethostname().split(".")[0]
    conf.write_text(_conf_text(root, host, [free_port() for _ in range(1 + len(NODES))]))
    cluster = Slurm(root, conf, bins)
    env = cluster.env()
    pid_files = [root / "slurmctld.pid", *(root / f"slurmd-{n}.pid" for n in NODES)]
    if _start_munge(bins):
        pid_files.insert(0, Path(MUNGE_PID_FILE))
    try:
        subprocess.run([bins["slurmctld"], "-f", str(conf)], env=env, check=True, timeout=30)
        for name in NODES:
            subprocess.run([bins["slurmd"], "-f", str(conf), "-N", name], env=env, check=True,
                           timeout=30)
        if not wait_for(cluster.nodes_idle, 60, 0.5):
            logs = "\n".join(p.read_text()[-2000:] for p in sorted((root / "log").glob("*.log")))
            pytest.fail(f"the test Slurm cluster did not come up:\n{logs}")
        yield cluster
    finally:
        for job in cluster.run("squeue", "-h", "-o", "%i").stdout.split():
            cluster.run("scancel", job)
        for path in pid_files[::-1]:
            _stop_by_pid_file(path)
