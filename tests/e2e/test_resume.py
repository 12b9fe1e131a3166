"""Resume is exact, restarts recover, broken checkpoints are skipped (real 2-rank CPU runs)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support import REPO
from tests.support.processes import worker_env

pytestmark = pytest.mark.slow

# 4 short epochs of the built-in default at 16 px (what is checked is exactness, not accuracy:
# a third less time than 32 px); one checkpoint per epoch, optional step checkpoints
BASE = ["--set", "epoch_size=4", "--set", "image_size=16", "--set", "eval_interval=0",
        "--set", "save_checkpoint_epochs=1",
        "--set", "keep_checkpoint_max=10", "--plain"]


def launch(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "launcher.cli", *args], cwd=REPO, env=worker_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def finish_checksums(run_dir):
    found = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("event") == "finish":
            found[rec["rank"]] = rec["checksum"]
    return found


def wait_for_checkpoint(run_dir, proc, predicate, timeout=240):
    """Block until metrics.jsonl shows a checkpoint event matching ``predicate``."""
    deadline = time.time() + timeout
    metrics = run_dir / "metrics.jsonl"
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        if metrics.exists():
            for line in metrics.read_text().splitlines():
                rec = json.loads(line)
                if rec.get("event") == "checkpoint" and predicate(rec):
                    return rec
        time.sleep(0.2)
    raise AssertionError("no checkpoint in time")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted reference: 4 epochs, step checkpoints every 7 steps (as the
    interrupted runs use them: BN statistics are averaged at every checkpoint)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    proc = launch(["--devices", "2", "--run-dir", str(run), *BASE, "--set", "save_checkpoint_steps=7"])
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return run


def stop_and_resume(tmp_path, predicate, extra=()):
    run = tmp_path / "run"
    proc = launch(["--devices", "2", "--run-dir", str(run), *BASE, *extra])
    rec = wait_for_checkpoint(run, proc, predicate)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out[-2000:]
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    resumed = launch(["--resume", str(run), "--plain"])
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    return run, rec, out


def test_resume_after_whole_epochs_is_bitwise_exact(straight, tmp_path):
    run, rec, out = stop_and_resume(tmp_path, lambda r: r["epoch"] == 2,
                                    ("--set", "save_checkpoint_steps=7"))
    sums = finish_checksums(run)
    assert sums == finish_checksums(straight)
    assert len(set(sums.values())) == 1
    info = json.loads((run / "run.json").read_text())
    assert info["attempt"] == 2
    assert len(info["attempts"]) == 1
    assert info["attempts"][0]["status"] == "interrupted"
    assert (run / "logs" / "attempt-1").is_dir()
    assert list((run / "logs").glob("*-rank0.log"))


def test_mid_epoch_resume_skips_truncated_newest_and_stays_exact(straight, tmp_path):
    """Stop after the step checkpoint at epoch 3 step 14, truncate it: resume must skip it
    with a warning, continue from epoch 3 step 7 (mid-epoch) and still end bitwise equal."""
    run = tmp_path / "run"
    proc = launch(["--devices", "2", "--run-dir", str(run), *BASE, "--set", "save_checkpoint_steps=7"])
    rec = wait_for_checkpoint(run, proc, lambda r: r["epoch"] == 3 and r["step"] == 14)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    newest = run / "checkpoints" / os.path.basename(rec["path"])
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    resumed = launch(["--resume", str(run), "--plain"])
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    assert f"skipping checkpoint {newest.name}" in out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    starts = [r for r in records if r.get("event") == "start" and r.get("resumed_from")]
    assert starts
    assert all(r["resumed_from"].endswith("-e0003-s000007.ckpt") for r in starts)
    assert all((r["start_epoch"], r["start_step"]) == (2, 7) for r in starts)
    assert finish_checksums(run) == finish_checksums(straight)


def test_worker_killed_once_with_max_restarts_succeeds(tmp_path):
    run = tmp_path / "run"
    proc = launch(["--devices", "2", "--run-dir", str(run), *BASE, "--max-restarts", "1"])
    wait_for_checkpoint(run, proc, lambda r: r["epoch"] == 1)
    pid = next(p["pid"] for p in json.loads((run / "run.json").read_text())["processes"]
               if p.get("rank") == 1)
    os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "succeeded"
    assert info["attempt"] == 2
    assert info["attempts"][0]["outcome"] == "restarted"
    assert "rank 1" in info["attempts"][0]["restart_reason"]
    assert json.loads((run / "eval.json").read_text())["top1"] > 0.3  # it trained (chance: 0.1)
    assert "restart 1 of 1" in out


def test_resume_on_three_then_one_device(tmp_path):
    """A 2-device run resumed on 3 devices, stopped again, finished on 1 device."""
    run = tmp_path / "run"
    proc = launch(["--devices", "2", "--run-dir", str(run), *BASE, "--set", "epoch_size=3"])
    wait_for_checkpoint(run, proc, lambda r: r["epoch"] == 1)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    on3 = launch(["--resume", str(run), "--devices", "3", "--plain"])
    wait_for_checkpoint(run, on3, lambda r: r["epoch"] == 2)
    on3.send_signal(signal.SIGTERM)
    out3, _ = on3.communicate(timeout=60)
    assert "written by 2 rank(s), this run has 3" in out3
    on1 = launch(["--resume", str(run), "--devices", "1", "--plain"])
    out1, _ = on1.communicate(timeout=600)
    assert on1.returncode == 0, out1[-3000:]
    assert "written by 3 rank(s), this run has 1" in out1
    info = json.loads((run / "run.json").read_text())
    assert info["attempt"] == 3
    assert info["plan"]["world_size"] == 1


def test_maths_change_refused_before_start_unless_forced(tmp_path):
    from wrn.checkpoint import config_hash
    from wrn.config import dump_config, load_config

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    cfg = load_config(None, ["epoch_size=1"])
    dump_config(cfg, run / "config.yaml")
    (run / "run.json").write_text(json.dumps({"status": "failed", "plan": {"world_size": 1}}))
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"config_hash": config_hash(cfg.to_dict())}))
    refused = launch(["--resume", str(run), "--set", "lr=0.5", "--dry-run"])
    out, _ = refused.communicate(timeout=120)
    assert refused.returncode == 2
    assert "--force" in out
    assert "Traceback" not in out
    same = launch(["--resume", str(run), "--set", "log_interval=3", "--dry-run"])
    out, _ = same.communicate(timeout=120)
    assert same.returncode == 0, out[-2000:]
    forced = launch(["--resume", str(run), "--set", "lr=0.5", "--force", "--dry-run"])
    assert forced.wait(timeout=120) == 0
