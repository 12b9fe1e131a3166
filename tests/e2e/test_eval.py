"""``wrn-launch eval`` with real MindSpore workers: a trained run evaluated on 2 devices and on
1 gives exactly the in-training evaluation's count, per class and in total."""

import csv
import json
import subprocess
import sys

import pytest
import yaml

from tests.support.processes import REPO, worker_env

pytestmark = pytest.mark.slow


def cli(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], cwd=cwd, env=worker_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-device run: 5 classes, 2 epochs, evaluated after each (27 test images, so
    the ranks' shares are unequal and the last batches padded)."""
    root = tmp_path_factory.mktemp("trained")
    subprocess.run([sys.executable, "-m", "wrn.synth", str(root / "data"), "--classes", "5",
                    "--train-per-class", "16", "--test-per-class", "6"], check=True, cwd=REPO,
                   env=worker_env(), capture_output=True)
    extra = root / "data" / "test" / sorted(p.name for p in (root / "data" / "test").iterdir())[0]
    for i in range(3):  # 30 - 3 = 27 test images: drop three so the split is odd
        sorted(extra.iterdir())[i].unlink()
    cfg = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    cfg.update({"data_path": str(root / "data"), "num_classes": 5, "epoch_size": 2, "batch_size": 8,
                "warmup_epochs": 0, "eval_interval": 1, "save_checkpoint_epochs": 1, "log_interval": 2,
                "num_parallel_workers": 1, "image_size": 16})
    (root / "job.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    res = cli("--devices", "2", "--config", str(root / "job.yaml"), "--run-dir", str(root / "run"),
              "--plain", cwd=root, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return root / "run"


def _eval_json(out: str) -> dict:
    """The eval_result record of ``eval --json`` (the last line)."""
    record = json.loads(out.strip().splitlines()[-1])
    assert record["event"] == "eval_result"
    return record


def test_two_devices_and_one_equal_the_in_training_evaluation(trained, tmp_path):
    in_training = json.loads((trained / "eval.json").read_text())
    results = {}
    for devices in ("2", "1"):
        res = cli("eval", str(trained), "--devices", devices, "--json", cwd=tmp_path)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        results[devices] = _eval_json(res.stdout)
    for got in results.values():
        assert (got["correct"], got["total"], got["top1"]) == (
            in_training["correct"], in_training["total"], in_training["top1"])
        assert got["total"] == 27
        assert got["chosen"].startswith("best evaluated: top-1")
    assert results["2"]["world_size"] == 2 and results["1"]["world_size"] == 1
    assert results["2"]["confused"] == results["1"]["confused"]
    # each evaluation has its own run directory inside the training run's
    for got in results.values():
        run_dir = trained / "eval" / got["run_dir"].rsplit("/", 1)[-1]
        assert json.loads((run_dir / "run.json").read_text())["status"] == "succeeded"
        rows = list(csv.DictReader((run_dir / "per_class.csv").open(encoding="utf-8")))
        assert len(rows) == 5
        assert sum(int(r["images"]) for r in rows) == 27
        assert sum(int(r["correct"]) for r in rows) == got["correct"]
        assert sorted(int(r["images"]) for r in rows) == [3, 6, 6, 6, 6]


def test_a_given_checkpoint_and_the_console_view(trained, tmp_path):
    first = sorted((trained / "checkpoints").glob("*.ckpt"))[0]
    res = cli("eval", str(first), "--devices", "2", "--run-dir", str(tmp_path / "ev"), "--plain", cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"evaluating {first} (given)" in res.stdout
    result = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert result["epoch"] == 1 and result["checkpoint"] == str(first)
    assert f"({result['correct']}/27)" in res.stdout
    for heading in ("top-5", "images skipped", "per_class.csv"):
        assert heading in res.stdout
    epoch1 = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    epoch1 = [e for e in epoch1 if e["event"] == "eval" and e["epoch"] == 1]
    assert result["correct"] == epoch1[0]["correct"]  # the in-training evaluation of epoch 1
