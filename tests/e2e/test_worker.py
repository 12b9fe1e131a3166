"""The training worker end to end: the small default on 2 processes under msrun, then a
standalone evaluation of its checkpoint, plus the worker's own error paths."""

import json
import subprocess
import sys

import pytest

from tests.support import REPO
from tests.support.processes import run_msrun, worker_env
from wrn import contract as events


def _events(text):
    return [e for e in (events.parse_record(line) for line in text.splitlines()) if e]


@pytest.fixture(scope="module")
def msrun_run(tmp_path_factory):
    """The unchanged worker on 2 ranks under msrun: two epochs of configs/default.yaml (its full
    10 epochs to >= 90 % run over SSH in test_ssh_e2e.py and under Slurm in test_slurm.py;
    here what matters is that msrun's environment works)."""
    out = tmp_path_factory.mktemp("msrun-run")
    proc = run_msrun([str(REPO / "wrn" / "train.py"), "--output-dir", str(out / "run"),
                      "--set", "epoch_size=2", "--set", "eval_interval=0"], out / "logs",
                     env=worker_env(WRN_NUM_THREADS="1"), timeout=900)
    logs = {k: (out / "logs" / f"worker_{k}.log").read_text(errors="replace") for k in (0, 1)}
    return proc, out, logs


@pytest.mark.slow
def test_worker_under_msrun_trains_in_sync(msrun_run):
    proc, out, logs = msrun_run
    assert proc.returncode == 0, logs[0][-3000:] + logs[1][-3000:]
    finishes = {}
    for text in logs.values():
        evs = _events(text)
        start = next(e for e in evs if e["event"] == "start")
        assert start["world_size"] == 2
        assert start["params"] > 0
        assert start["sink_size"] == 0  # CPU: one Python call per step, no data sinking
        finish = next(e for e in evs if e["event"] == "finish")
        finishes[finish["rank"]] = finish
        # every rank ran the same number of steps
        assert finish["global_step"] == start["steps_per_epoch"] * start["epochs"]
    assert sorted(finishes) == [0, 1]
    assert finishes[0]["checksum"] == finishes[1]["checksum"]
    result = json.loads((out / "run" / "eval.json").read_text())
    assert result["top1"] >= 0.18, result  # chance is 0.10; 0.25 measured after two short epochs
    assert result["total"] == 300
    assert result["world_size"] == 2
    classes = json.loads((out / "run" / "classes.json").read_text(encoding="utf-8"))
    assert len(classes) == 10
    assert any("（" in c for c in classes)
    assert (out / "run" / "checkpoints" / "latest.json").is_file()


@pytest.mark.slow
def test_standalone_eval_matches_distributed_eval(msrun_run, tmp_path):
    proc, out, _ = msrun_run
    assert proc.returncode == 0
    latest = json.loads((out / "run" / "checkpoints" / "latest.json").read_text())
    ckpt = out / "run" / "checkpoints" / latest["path"]
    # the ModelZoo flag spelling that crashed the original eval.py
    res = subprocess.run([sys.executable, "-m", "wrn.eval", f"--checkpoint_path={ckpt}",
                          "--output-dir", str(tmp_path)], cwd=REPO, env=worker_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    single = json.loads((tmp_path / "eval.json").read_text())
    dist = json.loads((out / "run" / "eval.json").read_text())
    assert (single["correct"], single["total"]) == (dist["correct"], dist["total"])
    assert single["world_size"] == 1
    assert "top-1 accuracy" in res.stdout


def _run_worker(args, tmp_path, **env):
    return subprocess.run([sys.executable, "-m", "wrn.train", "--output-dir", str(tmp_path / "o"), *args],
                          cwd=REPO, env=worker_env(**env), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, words", [
    (["--set", "bach_size=4"], "did you mean 'batch_size'"),
    (["--lr=abc"], "'--lr=abc': 'lr' must be a number"),
    (["--config", "missing.yaml"], "config file missing.yaml does not exist"),
    (["--set", "data_path=/no/such/dir"], "data_path"),
])
def test_worker_bad_input_is_one_clear_error(args, words, tmp_path):
    res = _run_worker(args, tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert words in res.stderr
    assert "Traceback" not in res.stderr
    errors = [e for e in _events(res.stdout) if e["event"] == "error"]
    assert len(errors) == 1
    assert words in errors[0]["message"]


def test_worker_num_classes_mismatch_is_clear(tmp_path):
    data = tmp_path / "d"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (data / split / cls).mkdir(parents=True)
    res = _run_worker(["--set", f"data_path={data}"], tmp_path)
    assert res.returncode == 2
    assert "num_classes" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow  # among the longest of the fast tier: keeps `make test-fast` under 3 minutes
def test_oneDNN_isa_cap_is_applied_before_mindspore_loads(tmp_path):
    """The worker's env preparation reaches oneDNN (verified through ONEDNN_VERBOSE)."""
    code = ("from wrn.dist import prepare_process_env; prepare_process_env();"
            "import mindspore as ms, numpy as np; from mindspore import nn; ms.set_device('CPU');"
            "nn.Conv2d(4, 4, 3)(ms.Tensor(np.ones((1, 4, 8, 8), np.float32)))")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env=worker_env(WRN_ONEDNN_ISA="SSE41", ONEDNN_VERBOSE="1"), timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "isa:Intel SSE4.1" in res.stdout


def test_pretrained_from_another_model_is_one_clear_error(tmp_path):
    import mindspore as ms

    from wrn.models import build_model

    ms.set_device("CPU")
    ckpt = tmp_path / "other.ckpt"
    ms.save_checkpoint(build_model("wrn16_2", 10, 32), str(ckpt))
    res = _run_worker(["--pretrained", str(ckpt)], tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "does not fit this model" in res.stderr
    assert "Traceback" not in res.stderr
