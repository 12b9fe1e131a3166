"""``wrn-launch predict`` and ``scripts/run_infer_310.sh`` end to end, as a user runs them.

A run is trained here (the default job's WRN-10-2 at 32 px, one CPU process, a few epochs on a
small generated dataset), evaluated with ``python -m wrn.eval`` and exported with ``wrn-launch
export`` as MINDIR (batch 1, the default) and ONNX (batch 5: the last batch is padded). Then
``wrn-launch predict`` with the checkpoint, the MINDIR and the ONNX file over the test split
(with a truncated JPEG, an undecodable one, a text file named .jpg and a .txt added) must give
the same top-1 class for every image, probabilities within 1e-4, exactly the evaluation's
accuracy, list and skip the four bad files, and leave a record per predict in the run
directory; ``run_infer_310.sh`` on the MINDIR must write that accuracy into acc.log.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.processes import fake_env, worker_env

NUM_CLASSES = 4
SCRIPT = REPO / "scripts" / "run_infer_310.sh"
RECORD_KEYS = {"kind", "model", "format", "model_bytes", "batch_size", "images", "unreadable", "top1",
               "correct", "total", "imgs_per_s", "seconds", "time"}


def wrn_launch(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], cwd=cwd, env=worker_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    from wrn import synth

    base = tmp_path_factory.mktemp("predict-e2e")
    data = base / "data"
    synth.generate(data, num_classes=NUM_CLASSES, train_per_class=32, test_per_class=10)
    run = base / "run"
    res = wrn_launch("--devices", "1", "--backend", "cpu", "--run-dir", str(run), "--plain",
                     "--set", f"data_path={data}", "--set", f"num_classes={NUM_CLASSES}",
                     "--set", "epoch_size=4", "--set", "eval_interval=0", "--set", "batch_size=16",
                     cwd=base, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ckpt = run / "checkpoints" / json.loads((run / "checkpoints" / "latest.json").read_text())["path"]

    res = subprocess.run([sys.executable, "-m", "wrn.eval", "--config", str(run / "config.yaml"),
                          "--ckpt", str(ckpt), "--output-dir", str(base / "eval")], cwd=base,
                         env=worker_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    evaluation = json.loads((base / "eval" / "eval.json").read_text())

    (run / "export").mkdir()
    models = {"checkpoint": ckpt}
    for fmt, batch in (("MINDIR", "1"), ("ONNX", "5")):
        res = wrn_launch("export", str(ckpt), "--format", fmt, "--batch-size", batch,
                         "-o", str(run / "export" / "model"), cwd=base)
        assert res.returncode == 0, res.stderr[-3000:]
        models[fmt] = run / "export" / f"model.{fmt.lower()}"

    # the test split with four files that are no usable images, in two class folders
    images = base / "images" / "test"
    shutil.copytree(data / "test", images)
    first, second = sorted(p for p in images.iterdir() if p.is_dir())[:2]
    good = sorted(first.glob("*.jpg"))[0].read_bytes()
    (first / "cut.jpg").write_bytes(good[: len(good) // 2])
    (first / "garbled.jpg").write_bytes(good[:20] + bytes(len(good) - 22) + good[-2:])
    (second / "notes.jpg").write_text("a text file named as an image, longer than the 64 bytes of the size check\n")
    (second / "readme.txt").write_text("not an image\n")
    bad = {"cut.jpg": "truncated JPEG", "garbled.jpg": "cannot be decoded",
           "notes.jpg": "not a JPEG or PNG file", "readme.txt": "not a .jpg/.jpeg/.png file"}
    return {"base": base, "run": run, "models": models, "eval": evaluation, "images": images,
            "bad": bad, "test_count": sum(1 for p in (data / "test").rglob("*") if p.is_file())}


@pytest.mark.slow
def test_checkpoint_mindir_and_onnx_agree_with_evaluation(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    run, evaluation = trained["run"], trained["eval"]
    before = set((run / "predict").glob("*.json")) if (run / "predict").is_dir() else set()
    docs = {}
    for fmt, model in trained["models"].items():
        out = tmp_path / f"{fmt}.json"
        res = wrn_launch("predict", str(model), str(trained["images"]), "-o", str(out), cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "Traceback" not in res.stderr
        docs[fmt] = json.loads(out.read_text())
        skipped = res.stderr[res.stderr.index("skipped 4 file(s)"):]
        for name, reason in trained["bad"].items():
            assert re.search(re.escape(name) + r" \(" + re.escape(reason), skipped), (name, skipped)
        assert f"top-1 accuracy {evaluation['top1']:.4f} ({evaluation['correct']}/{evaluation['total']})" \
            in res.stdout
        print(f"{fmt}: {docs[fmt]['summary']}")

    base = docs["checkpoint"]
    assert base["summary"]["images"] == trained["test_count"] == evaluation["total"]
    assert (docs["MINDIR"]["batch_size"], docs["ONNX"]["batch_size"]) == (1, 5)
    for fmt, doc in docs.items():
        summary = doc["summary"]
        assert (summary["correct"], summary["total"], summary["top1"]) == \
            (evaluation["correct"], evaluation["total"], evaluation["top1"])
        assert summary["unreadable"] == 4
        assert {Path(u["path"]).name for u in doc["unreadable"]} == set(trained["bad"])
        assert [p["path"] for p in doc["predictions"]] == [p["path"] for p in base["predictions"]]
        worst = 0.0
        for a, b in zip(doc["predictions"], base["predictions"]):
            assert a["top"][0]["class"] == b["top"][0]["class"], (fmt, a["path"])
            assert a["label"] == b["label"] and a["label"] is not None
            worst = max(worst, *(abs(x["p"] - y["p"]) for x, y in zip(a["top"], b["top"])))
        assert worst < 1e-4, (fmt, worst)
        print(f"{fmt}: largest probability difference from the checkpoint's {worst:.2e}")

    records = sorted(set((run / "predict").glob("*.json")) - before)
    assert len(records) == 3
    by_format = {}
    for path in records:
        rec = json.loads(path.read_text())
        assert set(rec) == RECORD_KEYS
        by_format[rec["format"]] = rec
    assert set(by_format) == {"checkpoint", "MINDIR", "ONNX"}
    for fmt, rec in by_format.items():
        assert rec["kind"] == "predict"
        assert Path(rec["model"]) == trained["models"][fmt].resolve()
        assert rec["model_bytes"] == trained["models"][fmt].stat().st_size
        assert (rec["images"], rec["unreadable"]) == (evaluation["total"], 4)
        assert (rec["top1"], rec["correct"], rec["total"]) == \
            (evaluation["top1"], evaluation["correct"], evaluation["total"])
        assert rec["imgs_per_s"] > 0 and rec["seconds"] > 0
        assert rec["time"].endswith("+00:00")


@pytest.mark.slow
def test_csv_output(trained, tmp_path):
    import csv

    out = tmp_path / "p.csv"
    res = wrn_launch("predict", str(trained["models"]["MINDIR"]), str(trained["images"]), "--top-k", "2",
                     "-o", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0]) == ["path", "label", "top1", "p1", "top2", "p2", "error"]
    scored = [r for r in rows if not r["error"]]
    assert len(scored) == trained["eval"]["total"]
    assert all(r["label"] and 0 <= float(r["p2"]) <= float(r["p1"]) <= 1 for r in scored)
    assert {Path(r["path"]).name for r in rows if r["error"]} == set(trained["bad"])


@pytest.mark.slow
def test_run_infer_310_writes_the_evaluations_accuracy_into_acc_log(trained, tmp_path):
    env = fake_env() | {"DEVICE_TARGET": "CPU", "GLOG_v": "3"}
    res = subprocess.run(["bash", str(SCRIPT), str(trained["models"]["MINDIR"]), "rp2k",
                          str(trained["images"]), str(trained["run"] / "classes.json"), "0"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    line = (tmp_path / "acc.log").read_text().strip()
    match = re.fullmatch(r"Total data: (\d+), top1 accuracy: ([0-9.e-]+), top5 accuracy: ([0-9.e-]+)\.", line)
    assert match, line
    evaluation = trained["eval"]
    assert int(match[1]) == evaluation["total"]
    assert float(match[2]) == evaluation["top1"]
    assert float(match[3]) == 1.0  # 4 classes: the top 5 hold every class
    assert line in res.stdout
    assert (tmp_path / "infer.log").is_file()
    assert json.loads((tmp_path / "infer_result.json").read_text())["summary"]["total"] == evaluation["total"]


@pytest.mark.parametrize("args", [[], ["m.mindir", "rp2k", "data", "classes.json"],
                                  ["m.mindir", "rp2k", "data", "classes.json", "0", "extra"]])
def test_run_infer_310_usage_on_wrong_argument_count(tmp_path, args):
    res = subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=fake_env(), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.startswith(f"usage: bash {SCRIPT} MINDIR_PATH DATASET DATA_PATH LABEL_FILE DEVICE_ID")
    assert "DEVICE_TARGET" in res.stderr
    assert not (tmp_path / "acc.log").exists()


@pytest.mark.parametrize("args, env, words", [
    (["m.mindir", "rp2k", "data", "classes.json", "one"], {}, "DEVICE_ID 'one' is not a device number"),
    (["m.mindir", "", "data", "classes.json", "0"], {}, "DATASET is empty"),
    (["m.mindir", "rp2k", "data", "classes.json", "0"], {"DEVICE_TARGET": "TPU"}, "DEVICE_TARGET=TPU"),
    (["m.mindir", "rp2k", "data", "classes.json", "0"], {"DEVICE_TARGET": "GPU"}, "runs on Ascend or CPU"),
])
def test_run_infer_310_bad_arguments_exit_2(tmp_path, args, env, words):
    res = subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=fake_env() | env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert words in res.stderr
    assert not (tmp_path / "acc.log").exists()


def test_run_infer_310_passes_on_predicts_error(tmp_path):
    """A missing model: predict's one paragraph on stderr and its exit status 2, no acc.log."""
    (tmp_path / "data").mkdir()
    res = subprocess.run(["bash", str(SCRIPT), "none.mindir", "rp2k", "data", "classes.json", "0"],
                         cwd=tmp_path, env=fake_env() | {"DEVICE_TARGET": "CPU"}, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2
    assert "wrn-launch predict: error: MODEL " in res.stderr and "none.mindir does not exist" in res.stderr
    assert "inference failed (exit status 2)" in res.stderr
    assert not (tmp_path / "acc.log").exists()
    assert "Traceback" not in res.stderr
