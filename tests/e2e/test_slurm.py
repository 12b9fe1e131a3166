"""Launching through Slurm, on the real two-node test cluster (``slurm`` fixture: slurmctld and
slurmd n1, n2 on this machine): ``--launcher slurm`` inside salloc, ``wrn-launch sbatch``,
scancel, and a requeue that resumes by itself. The fake worker stands in for training where the
launcher's behaviour is the point; the real MindSpore runs (marked ``slow``) are one sbatch of
the default job and one pair of short runs (uninterrupted under salloc, requeued mid-epoch
under sbatch) compared bitwise."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.launches import FAKE_WORKER_CMD
from tests.support.processes import fake_env, run_processes, wait_for, worker_env
from tests.support.slurm import KILL_WAIT

LAUNCH = [sys.executable, "-P", "-m", "launcher.cli"]
FAKE = ["--worker-cmd", FAKE_WORKER_CMD, "--scheduler-cmd", "none", "--backend", "cpu",
        "--plain", "--grace", "1"]


def _events(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _sbatch(slurm, tmp_path: Path, *args: str, env: dict | None = None) -> tuple[str, Path]:
    done = subprocess.run([*LAUNCH, "sbatch", *args], cwd=tmp_path, env=slurm.env(env or fake_env()),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    job = lines[0].split()[-1]
    run_dir = Path(lines[1].split(" ", 2)[2])
    return job, run_dir


def job_processes(slurm, job: str) -> list[int]:
    """Live processes of Slurm job ``job`` of the test cluster on this machine (both test
    nodes): every process of a job's steps and batch script has ``SLURM_JOB_ID=<job>`` and the
    cluster's ``SLURM_CONF`` in its environment."""
    markers = [f"SLURM_JOB_ID={job}".encode() + b"\0", f"SLURM_CONF={slurm.conf}".encode() + b"\0"]
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes() + b"\0"
                if all(m in environ for m in markers) and \
                        (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _wait_gone(slurm, job: str, timeout: float) -> None:
    """Until Slurm says the job ended (or forgot it)."""
    assert wait_for(lambda: slurm.job_state(job) in (None, "COMPLETED", "FAILED", "CANCELLED",
                                                     "TIMEOUT", "NODE_FAIL"), timeout, 0.5), \
        slurm.job_state(job)


# -- fake workers: the launcher's behaviour ------------------------------------------------------
def test_salloc_launches_on_both_nodes_through_srun(slurm, tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(["salloc", "-N2", "--quiet", *LAUNCH, "--devices-per-node", "1",
                           "--run-dir", str(run_dir), *FAKE],
                          cwd=tmp_path, env=slurm.env(fake_env(STEPS=3)), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    first = (done.stderr + done.stdout).splitlines()[:3]
    assert any(line.startswith("launching on Slurm job ") and "n1" in line and "n2" in line
               for line in first), first
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert {p["host"] for p in record["processes"]} == {"n1", "n2"}
    assert (run_dir / "logs" / "n1-rank0.log").stat().st_size > 0
    assert (run_dir / "logs" / "n2-rank1.log").stat().st_size > 0
    job = json.loads((run_dir / "slurm.json").read_text())["job_id"]
    assert job.isdigit()
    shown = subprocess.run([*LAUNCH, "runs", str(tmp_path)], cwd=tmp_path, env=slurm.env(fake_env()),
                           capture_output=True, text=True, timeout=60).stdout
    assert f"{job} " in shown and "slurm job" in shown


def test_dry_run_inside_an_allocation_shows_the_nodes_and_starts_nothing(slurm, tmp_path):
    done = subprocess.run(["salloc", "-N2", "--quiet", *LAUNCH, "--devices-per-node", "2",
                           "--dry-run", "--run-dir", str(tmp_path / "run"), *FAKE],
                          cwd=tmp_path, env=slurm.env(fake_env()), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "slurm: job" in done.stdout and "127.0.0.2" in done.stdout and "127.0.0.3" in done.stdout
    assert "MS_WORKER_NUM=4" in done.stdout
    assert not (tmp_path / "run").exists()


def test_sbatch_no_submit_writes_a_readable_script(slurm, tmp_path):
    done = subprocess.run([*LAUNCH, "sbatch", "--nodes", "2", "--time", "10", "--requeue",
                           "--sbatch-arg=--signal=B:USR1@30", "--no-submit", "--",
                           "--set", "epoch_size=3", "--run-dir", str(tmp_path / "run")],
                          cwd=tmp_path, env=slurm.env(fake_env()), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    script = (tmp_path / "run" / "job.sbatch").read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --time=10", "#SBATCH --requeue",
                 "#SBATCH --signal=B:USR1@30", "#   epoch_size: 3", f"cd {tmp_path}",
                 sys.executable, "--resume"):
        assert line in script, line
    assert slurm.run("squeue", "-h").stdout.strip() == ""


@pytest.mark.slow  # among the longest of the fast tier: keeps `make test-fast` under 3 minutes
def test_scancel_leaves_no_process_on_either_node(slurm, tmp_path):
    job, run_dir = _sbatch(slurm, tmp_path, "--nodes", "2", "--devices-per-node", "1", "--",
                           "--run-dir", str(tmp_path / "run"), *FAKE,
                           env=fake_env(STEPS=100000, STEP_S=0.05, GRANDCHILD=1))
    assert wait_for(lambda: {e.get("rank") for e in _events(run_dir) if e["event"] == "step"}
                    == {0, 1}, 90, 0.3), (run_dir / f"slurm-{job}.out").read_text()[-2000:]
    assert run_processes(run_dir) and job_processes(slurm, job)
    t0 = time.monotonic()
    slurm.run("scancel", job)
    gone = wait_for(lambda: not run_processes(run_dir) and not job_processes(slurm, job),
                    KILL_WAIT + 5, 0.1)
    assert gone, f"left after {KILL_WAIT + 5} s: {run_processes(run_dir)} {job_processes(slurm, job)}"
    print(f"scancel -> no process of the run: {time.monotonic() - t0:.2f} s")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "preempted", (run_dir / f"slurm-{job}.out").read_text()[-2000:]


@pytest.mark.slow  # among the longest of the fast tier: keeps `make test-fast` under 3 minutes
def test_the_warning_signal_to_the_batch_shell_stops_the_run_as_preempted(slurm, tmp_path):
    """``--signal=B:USR1@S`` signals only the batch shell (the launcher): it stops the agents,
    which stop their workers; nothing is left and run.json says preempted."""
    job, run_dir = _sbatch(slurm, tmp_path, "--nodes", "2", "--devices-per-node", "1", "--",
                           "--run-dir", str(tmp_path / "run"), *FAKE,
                           env=fake_env(STEPS=100000, STEP_S=0.05))
    assert wait_for(lambda: {e.get("rank") for e in _events(run_dir) if e["event"] == "step"}
                    == {0, 1}, 90, 0.3), (run_dir / f"slurm-{job}.out").read_text()[-2000:]
    assert slurm.run("scancel", "--batch", "--signal=USR1", job).returncode == 0
    _wait_gone(slurm, job, 30)
    assert wait_for(lambda: not run_processes(run_dir) and not job_processes(slurm, job), 10, 0.1)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "preempted", (run_dir / f"slurm-{job}.out").read_text()[-2000:]
    assert "SIGUSR1 received" in (run_dir / f"slurm-{job}.out").read_text()


def test_a_failing_rank_stops_both_nodes_and_leaves_nothing(slurm, tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(["salloc", "-N2", "--quiet", *LAUNCH, "--devices-per-node", "1",
                           "--run-dir", str(run_dir), *FAKE],
                          cwd=tmp_path, env=slurm.env(fake_env(STEPS=100000, RANK=1, EXIT_CODE=3,
                                                              EXIT_AT=3, GRANDCHILD=1)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "rank 1" in done.stdout + done.stderr
    assert not run_processes(run_dir)
    job = json.loads((run_dir / "slurm.json").read_text())["job_id"]
    assert wait_for(lambda: not job_processes(slurm, job), KILL_WAIT + 5, 0.1), job_processes(slurm, job)


# -- real MindSpore ------------------------------------------------------------------------------
@pytest.mark.slow
def test_sbatch_default_job_trains_on_both_nodes(slurm, tmp_path):
    job, run_dir = _sbatch(slurm, tmp_path, "--nodes", "2", "--devices-per-node", "1", "--",
                           "--backend", "cpu", "--plain", "--run-dir", str(tmp_path / "run"),
                           env=worker_env())
    _wait_gone(slurm, job, 900)
    out = (run_dir / f"slurm-{job}.out").read_text()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded", out[-3000:]
    summary = record["summary"]
    assert summary["top1"] >= 0.90 or summary["top1"] >= 90, summary
    assert summary["replicas_in_sync"] is True, summary
    for log in ("n1-rank0.log", "n2-rank1.log"):
        assert (run_dir / "logs" / log).stat().st_size > 0, log
    shown = subprocess.run([*LAUNCH, "runs", str(tmp_path)], cwd=tmp_path, env=slurm.env(fake_env()),
                           capture_output=True, text=True, timeout=60).stdout
    assert job in shown and "succeeded" in shown, shown

    # evaluated inside a new allocation of both nodes: exactly the in-training count
    done = subprocess.run(["salloc", "-N2", "--quiet", *LAUNCH, "eval", str(run_dir), "--devices-per-node", "1",
                           "--backend", "cpu", "--json", "--run-dir", str(tmp_path / "eval")],
                          cwd=tmp_path, env=slurm.env(worker_env()), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    in_training = {e["epoch"]: e for e in _events(run_dir) if e["event"] == "eval"}[result["epoch"]]
    assert (result["correct"], result["total"], result["world_size"]) == (
        in_training["correct"], in_training["total"], 2)
    record = json.loads((tmp_path / "eval" / "run.json").read_text())
    assert {p["host"] for p in record["processes"]} == {"n1", "n2"}


def _final_checksums(run_dir: Path) -> dict[int, str]:
    return {e["rank"]: e["checksum"] for e in _events(run_dir) if e["event"] == "finish"}


@pytest.mark.slow
def test_requeue_mid_epoch_resumes_and_equals_an_uninterrupted_run(slurm, tmp_path):
    args = ["--backend", "cpu", "--plain", "--set", "epoch_size=2", "--set", "image_size=16",
            "--grace", "20"]
    straight = tmp_path / "straight"
    done = subprocess.run(["salloc", "-N2", "--quiet", *LAUNCH, "--devices-per-node", "1",
                           "--run-dir", str(straight), *args], cwd=tmp_path,
                          env=slurm.env(worker_env()), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert {e["host"] for e in _events(straight) if e["event"] == "start"} == {"n1", "n2"}
    reference = _final_checksums(straight)
    assert len(set(reference.values())) == 1, reference

    job, run_dir = _sbatch(slurm, tmp_path, "--nodes", "2", "--devices-per-node", "1",
                           "--requeue", "--", "--run-dir", str(tmp_path / "requeued"), *args,
                           env=worker_env())
    mid = wait_for(lambda: next((e for e in _events(run_dir) if e["event"] == "step"
                                 and e["epoch"] == 2 and e["rank"] == 0), None), 600, 0.2)
    assert mid, (run_dir / f"slurm-{job}.out").read_text()[-3000:]
    assert slurm.run("scontrol", "requeue", job).returncode == 0
    assert wait_for(lambda: json.loads((run_dir / "run.json").read_text())["status"]
                    == "preempted", KILL_WAIT + 30, 0.3)
    first_attempt = json.loads((run_dir / "run.json").read_text())["attempt"]
    _wait_gone_after_restart(slurm, job, run_dir, first_attempt)
    out = (run_dir / f"slurm-{job}.out").read_text()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded", out[-3000:]
    preempted = [e for e in _events(run_dir) if e["event"] == "warning" and e.get("preempted")]
    assert preempted and preempted[0]["epoch"] == 2 and 0 < preempted[0]["step"] < 1000, preempted
    assert _final_checksums(run_dir) == reference


def _wait_gone_after_restart(slurm, job: str, run_dir: Path, first_attempt: int) -> None:
    """Until the requeued job ran again (a later attempt of the run) and finished it."""
    def finished():
        try:
            record = json.loads((run_dir / "run.json").read_text())
        except (OSError, ValueError):
            return False
        return record.get("attempt", 0) > first_attempt and \
            record["status"] not in ("running", "preempted")
    assert wait_for(finished, 900, 1.0), (run_dir / f"slurm-{job}.out").read_text()[-3000:]
    _wait_gone(slurm, job, 120)
