"""``wrn-launch predict`` in this process: finding images, labelled splits, class index files,
every input error as one paragraph (exit status 2), models that do not fit their class index,
config or batch size, the preprocessing against evaluation's pipeline, the outputs and the run
record; hypothesis properties of the new flags (--top-k, --batch-size, -o).

Models are a fresh WRN-10-2 (4 classes, 32 px) saved and exported here (no training); the
images come from ``wrn.synth``. The end-to-end run with a trained model is tests/e2e/test_predict.py.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wrn.imagefiles import find_images, labelled_split
from wrn.inference import find_run_dir, model_kind
from wrn.labelfiles import ClassIndex, PredictError, read_class_index
from wrn.predict import accuracy_line

NUM_CLASSES = 4
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _keep_process_state():
    """predict configures MindSpore (device, graph mode) and may set variables in os.environ
    (the oneDNN cap); give both back so later tests in this process see what they expect."""
    env = dict(os.environ)
    mode = None
    if "mindspore" in sys.modules:
        import mindspore as ms

        mode = ms.get_context("mode")
    yield
    os.environ.clear()
    os.environ.update(env)
    if mode is not None:
        import mindspore as ms

        ms.set_context(mode=mode)


def cli(*args: str) -> tuple[int, str, str]:
    """``wrn-launch predict ARGS`` in this process: (exit status, stdout, stderr)."""
    from launcher import cli as launcher_cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = launcher_cli.main(["predict", *args])
        except SystemExit as exc:  # argparse's usage errors
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def one_paragraph(err: str, *words: str) -> None:
    text = err.strip()
    assert text.startswith("wrn-launch predict: error: "), err
    assert "\n" not in text, err
    assert "Traceback" not in err
    for word in words:
        assert word in text, (word, text)


# --------------------------------------------------------------------------- finding images


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_are_searched_recursively_for_images_in_any_letter_case(tmp_path):
    for name in ("b.JPG", "a.png", "sub/c.Jpeg", "sub/deeper/d.jpg", "notes.txt", ".hidden.jpg",
                 ".cache/e.jpg", "sub/x.gif"):
        touch(tmp_path / "imgs" / name)
    single = touch(tmp_path / "single.PNG")
    found = find_images([tmp_path / "imgs", single, tmp_path / "imgs" / "a.png"])
    names = [os.path.relpath(f, tmp_path) for f in found.files]
    assert names == ["imgs/a.png", "imgs/b.JPG", "imgs/sub/c.Jpeg", "imgs/sub/deeper/d.jpg", "single.PNG"]
    assert found.labels == (-1,) * 5  # no class index: nothing is labelled
    assert sorted((os.path.relpath(p, tmp_path), why) for p, why in found.skipped) == [
        ("imgs/notes.txt", "not a .jpg/.jpeg/.png file"), ("imgs/sub/x.gif", "not a .jpg/.jpeg/.png file")]
    assert found.labelled == ()


def test_a_folder_of_class_folders_is_a_labelled_split(tmp_path):
    classes = ClassIndex(("cat", "dog", "[red]fox"), "classes.json")
    touch(tmp_path / "test" / "dog" / "1.jpg")
    touch(tmp_path / "test" / "[red]fox" / "deep" / "2.png")
    touch(tmp_path / "test" / "loose.jpg")  # beside the class folders: no label
    assert labelled_split(tmp_path / "test", classes.names)
    found = find_images([tmp_path / "test"], classes)
    assert dict(zip((os.path.relpath(f, tmp_path) for f in found.files), found.labels)) == {
        "test/[red]fox/deep/2.png": 2, "test/dog/1.jpg": 1, "test/loose.jpg": -1}
    assert found.labelled == (str(tmp_path / "test"),)
    # a class folder given directly is not a split: its own sub-folders are not classes
    assert find_images([tmp_path / "test" / "dog"], classes).labels == (-1,)


def test_a_folder_with_a_stranger_sub_folder_is_not_labelled_and_says_why(tmp_path):
    classes = ClassIndex(("cat", "dog"), "RUN/classes.json")
    touch(tmp_path / "test" / "dog" / "1.jpg")
    touch(tmp_path / "test" / "wolf" / "2.jpg")
    found = find_images([tmp_path / "test"], classes)
    assert found.labels == (-1, -1)
    assert not labelled_split(tmp_path / "test", classes.names)
    assert len(found.notes) == 1
    assert "'wolf'" in found.notes[0] and "RUN/classes.json" in found.notes[0]


def test_modelzoo_label_files_label_by_file_name_and_refuse_repeated_names(tmp_path):
    labels = tmp_path / "imagenet_label.json"
    labels.write_text(json.dumps({"a.JPEG": 2, "b.jpg": 0}))
    index = read_class_index(labels)
    assert index.names is None and index.by_file == {"a.JPEG": 2, "b.jpg": 0}
    touch(tmp_path / "val" / "x" / "a.JPEG")
    touch(tmp_path / "val" / "y" / "b.jpg")
    touch(tmp_path / "val" / "y" / "c.jpg")
    assert find_images([tmp_path / "val"], index).labels == (2, 0, -1)
    assert index.with_count(3).names == ("0", "1", "2")
    with pytest.raises(PredictError, match="labels go up to 2 but the model has 2 classes"):
        index.with_count(2)
    touch(tmp_path / "val" / "z" / "a.JPEG")
    with pytest.raises(PredictError, match="have the same name, so their labels are ambiguous"):
        find_images([tmp_path / "val"], index)


def test_no_images_or_a_missing_path_is_an_error_naming_it(tmp_path):
    touch(tmp_path / "docs" / "readme.txt")
    with pytest.raises(PredictError, match=r"IMAGES: no \.jpg, \.jpeg or \.png image in .*docs .*readme\.txt"):
        find_images([tmp_path / "docs"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictError, match="IMAGES: no .jpg"):
        find_images([tmp_path / "empty"])
    with pytest.raises(PredictError, match="IMAGES: .*nope does not exist"):
        find_images([tmp_path / "nope"])


# --------------------------------------------------------------------------- class index files


@pytest.mark.parametrize("name, text, names", [
    ("classes.json", '["b", "a", "饼干 1"]', ("b", "a", "饼干 1")),
    ("index.json", '{"b": 1, "a": 0}', ("a", "b")),
    ("labels.txt", "cat\n\n dog \r\n[red]x\n", ("cat", "dog", "[red]x")),
    ("labels", '["x", "y"]', ("x", "y")),
])
def test_class_index_formats(tmp_path, name, text, names):
    (tmp_path / name).write_text(text, encoding="utf-8")
    assert read_class_index(tmp_path / name).names == names


@pytest.mark.parametrize("name, text, words", [
    ("classes.json", "[1, 2", "not valid JSON"),
    ("classes.json", '["a", "a"]', "duplicate class names"),
    ("classes.json", "[]", "non-empty list"),
    ("classes.json", '{"a": 0, "b": 2}', "must be 0..1, each once"),
    ("classes.json", '{"a": "x"}', "a JSON object must map"),
    ("classes.json", '"a"', "must be a list of names"),
    ("config.yaml", "a: 1", "unknown class index format '.yaml'"),
    ("missing.json", None, "cannot be read"),
])
def test_bad_class_index_files_are_one_error_naming_the_file(tmp_path, name, text, words):
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(PredictError) as caught:
        read_class_index(tmp_path / name)
    assert str(tmp_path / name) in str(caught.value)
    assert words in str(caught.value)
    assert "classes.json of the training run" in str(caught.value)


# --------------------------------------------------------------------------- model files


def test_model_kind_and_run_directory(tmp_path):
    run = tmp_path / "run"
    assert model_kind(touch(run / "checkpoints" / "a.ckpt")) == "checkpoint"
    assert model_kind(touch(run / "m.MINDIR")) == "MINDIR"
    assert model_kind(touch(run / "export" / "m.onnx")) == "ONNX"
    with pytest.raises(PredictError, match=r"unknown model file type '\.pt'.*\(\.ckpt\)"):
        model_kind(touch(tmp_path / "m.pt"))
    with pytest.raises(PredictError, match="MODEL .*none.onnx does not exist"):
        model_kind(tmp_path / "none.onnx")
    (tmp_path / "dir.mindir").mkdir()
    with pytest.raises(PredictError, match="is a folder"):
        model_kind(tmp_path / "dir.mindir")
    assert find_run_dir(run / "checkpoints" / "a.ckpt") is None  # no classes.json/config.yaml yet
    touch(run / "classes.json", b'["a"]')
    for model in ("checkpoints/a.ckpt", "m.MINDIR", "export/m.onnx"):
        assert find_run_dir(run / model) == run
    assert find_run_dir(touch(run / "a" / "b" / "m.onnx")) is None  # at most two levels


# --------------------------------------------------------------------------- with real models


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """RUN/{config.yaml, classes.json, checkpoints/tiny.ckpt, model.mindir (batch 2),
    export/model.onnx (batch 2)} of a fresh WRN-10-2 with 4 classes at 32 px, and a labelled
    split of generated images (test/<class>/...), 3 per class."""
    import mindspore as ms

    from wrn import checkpoint, synth
    from wrn.classindex import save_class_index
    from wrn.config import dump_config, load_config
    from wrn.export import export_checkpoint
    from wrn.models import build_model

    env, mode = dict(os.environ), ms.get_context("mode")
    base = tmp_path_factory.mktemp("predict")
    data = base / "data"
    synth.generate(data, num_classes=NUM_CLASSES, train_per_class=1, test_per_class=3)
    run = base / "run"
    run.mkdir()
    cfg = load_config(None, [f"num_classes={NUM_CLASSES}", "model=wrn10_2", "image_size=32"])
    dump_config(cfg, run / "config.yaml")
    classes = synth.class_names(NUM_CLASSES)
    save_class_index(classes, run)
    ms.set_seed(3)
    net = build_model("wrn10_2", NUM_CLASSES, 32)
    ckpt = checkpoint.save(net, run / "checkpoints", "tiny", {"epoch": 1, "step": 1, "model": "wrn10_2"})
    (run / "export").mkdir()
    mindir = export_checkpoint(ckpt, "MINDIR", output=run / "model", batch_size=2).path
    onnx = export_checkpoint(ckpt, "ONNX", output=run / "export" / "model", batch_size=2).path
    os.environ.clear()
    os.environ.update(env)
    ms.set_context(mode=mode)
    return {"run": run, "ckpt": ckpt, "mindir": mindir, "onnx": onnx, "test": data / "test",
            "classes": classes, "cfg": cfg}


def test_checkpoint_mindir_and_onnx_agree_and_leave_run_records(models, tmp_path):
    pytest.importorskip("onnxruntime")
    docs = {}
    before = set((models["run"] / "predict").glob("*.json"))
    for kind in ("ckpt", "mindir", "onnx"):
        out = tmp_path / f"{kind}.json"
        rc, stdout, err = cli(str(models[kind]), str(models["test"]), "-o", str(out), "--top-k", "3")
        assert rc == 0, err
        docs[kind] = json.loads(out.read_text())
        assert f"wrote {out}" in stdout
        assert "top-1 accuracy" in stdout
    base = docs["ckpt"]
    assert base["summary"]["images"] == 3 * NUM_CLASSES
    assert base["summary"]["total"] == 3 * NUM_CLASSES
    assert base["batch_size"] == 12  # min(32, images): a checkpoint takes any batch
    assert (docs["mindir"]["batch_size"], docs["onnx"]["batch_size"]) == (2, 2)  # as exported
    for kind in ("mindir", "onnx"):
        doc = docs[kind]
        assert [p["path"] for p in doc["predictions"]] == [p["path"] for p in base["predictions"]]
        for a, b in zip(doc["predictions"], base["predictions"]):
            assert a["top"][0]["index"] == b["top"][0]["index"]
            assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
            assert all(abs(x["p"] - y["p"]) < 1e-4 for x, y in zip(a["top"], b["top"]))
            assert len(a["top"]) == 3
        assert doc["summary"]["correct"] == base["summary"]["correct"]
    records = sorted(set((models["run"] / "predict").glob("*.json")) - before)
    assert len(records) == 3
    for path in records:
        rec = json.loads(path.read_text())
        assert set(rec) == {"kind", "model", "format", "model_bytes", "batch_size", "images",
                            "unreadable", "top1", "correct", "total", "imgs_per_s", "seconds", "time"}
        assert rec["kind"] == "predict"
        assert rec["images"] == rec["total"] == 3 * NUM_CLASSES
        assert rec["model_bytes"] == Path(rec["model"]).stat().st_size
        assert re.fullmatch(r"\d{8}T\d{6}Z(-\d+)?", path.stem), path
    assert {json.loads(p.read_text())["format"] for p in records} == {"checkpoint", "MINDIR", "ONNX"}


def test_the_preprocessing_is_evaluations_pixel_for_pixel(models):
    """``wrn.predict.Preprocess`` and ``wrn.pipeline.eval_dataset`` give the same arrays."""
    from wrn.pipeline import eval_dataset
    from wrn.predict import Preprocess
    from wrn.splits import scan_split

    split = scan_split(models["test"].parent, "test", models["classes"])
    data, _ = eval_dataset(split, rank=0, world=1, batch_size=len(split), image_size=32, num_workers=1)
    images, _ = next(data.create_tuple_iterator(num_epochs=1, output_numpy=True))
    prep = Preprocess(32)
    ours = np.stack([prep(f) for f in split.files])
    assert np.array_equal(ours, images)


def test_unreadable_files_are_listed_and_skipped(models, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    good = next(models["test"].rglob("*.jpg"))
    (folder / "good.jpg").write_bytes(good.read_bytes())  # sorted right after garbled.jpg
    (folder / "cut.jpg").write_bytes(good.read_bytes()[:200])
    data = good.read_bytes()  # head and tail intact, the middle zeroed: passes the quick check
    (folder / "garbled.jpg").write_bytes(data[:20] + bytes(len(data) - 22) + data[-2:])
    (folder / "text.png").write_text("not an image, but long enough to pass the size check of sixty-four bytes ......")
    (folder / "empty.jpeg").write_bytes(b"")
    (folder / "notes.txt").write_text("x")
    out = tmp_path / "p.csv"
    rc, stdout, err = cli(str(models["onnx"]), str(folder), "-o", str(out))
    assert rc == 0, err
    assert "scored 1 image(s)" in stdout
    assert "skipped 5 file(s)" in err
    for words in ("cut.jpg (truncated JPEG (no end-of-image marker))",
                  "garbled.jpg (cannot be decoded: Decode: image decode failed.)",
                  "text.png (not a JPEG or PNG file)", "empty.jpeg (empty file)",
                  "notes.txt (not a .jpg/.jpeg/.png file)"):
        assert words in err
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows][0] == str(folder / "good.jpg")
    assert len(rows) == 6 and rows[0]["error"] == "" and rows[0]["top1"] in models["classes"]
    assert {r["error"] for r in rows[1:]} >= {"empty file", "not a JPEG or PNG file"}
    assert not (tmp_path / "abnormal_image.jpg").exists() and not Path("abnormal_image.jpg").exists()


def test_models_that_do_not_fit_are_one_paragraph_naming_the_fix(models, tmp_path):
    pytest.importorskip("onnxruntime")
    test = str(models["test"])
    three = tmp_path / "three.json"
    three.write_text('["a", "b", "c"]')
    rc, _, err = cli(str(models["mindir"]), test, "--classes", str(three))
    assert rc == 2  # the run's config is found beside the model
    one_paragraph(err, "three.json has 3 classes but the config", "says num_classes 4")
    loose = tmp_path / "loose.mindir"
    loose.write_bytes(models["mindir"].read_bytes())
    rc, _, err = cli(str(loose), test, "--classes", str(three))
    assert rc == 2
    one_paragraph(err, "outputs 4 classes but the class index", "has 3", "--classes")
    rc, _, err = cli(str(models["onnx"]), test, "--batch-size", "8")
    assert rc == 2
    one_paragraph(err, "--batch-size 8", "exactly 2 image(s)", "re-export with `wrn-launch export CKPT "
                  "--format ONNX --batch-size 8`")
    other = tmp_path / "other.yaml"
    other.write_text(Path(models["run"] / "config.yaml").read_text().replace("image_size: 32", "image_size: 64"))
    rc, _, err = cli(str(models["onnx"]), test, "--config", str(other))
    assert rc == 2
    one_paragraph(err, "takes 32x32 images", "image_size 64")
    rc, _, err = cli(str(models["ckpt"]), test, "--config", str(other))
    assert rc == 0, err  # a checkpoint is rebuilt at the config's size: 64 px works too
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(Path(models["run"] / "config.yaml").read_text().replace("num_classes: 4", "num_classes: 5"))
    rc, _, err = cli(str(models["ckpt"]), test, "--config", str(bigger))
    assert rc == 2
    one_paragraph(err, "has 4 classes but the config", "num_classes 5")
    rc, _, err = cli(str(loose), test)
    assert rc == 2
    one_paragraph(err, "no class names; pass --classes RUN_DIR/classes.json")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00" * 100)
    rc, _, err = cli(str(broken), test, "--classes", str(models["run"] / "classes.json"))
    assert rc == 2
    one_paragraph(err, "is not a readable ONNX file")
    broken = tmp_path / "broken.mindir"
    broken.write_bytes(b"\x07" * 100)
    rc, _, err = cli(str(broken), test, "--classes", str(models["run"] / "classes.json"))
    assert rc == 2
    one_paragraph(err, "is not a readable MINDIR file")


@pytest.mark.parametrize("args, words", [
    (["{tmp}/none.ckpt", "{test}"], ["MODEL", "none.ckpt does not exist"]),
    (["{tmp}/m.h5", "{test}"], ["unknown model file type '.h5'"]),
    (["{ckpt}", "{tmp}/nothing"], ["IMAGES:", "nothing does not exist"]),
    (["{ckpt}", "{tmp}"], ["IMAGES: no .jpg, .jpeg or .png image"]),
    (["{ckpt}", "{test}", "--top-k", "0"], ["--top-k", "'0': must be 1 or more"]),
    (["{ckpt}", "{test}", "--top-k", "-3"], ["--top-k", "'-3': must be 1 or more"]),
    (["{ckpt}", "{test}", "--batch-size", "0"], ["--batch-size", "'0': must be 1 or more"]),
    (["{ckpt}", "{test}", "-o", "out.txt"], ["-o", "must end in .csv or .json"]),
    (["{ckpt}", "{test}", "-o", "{tmp}/no/out.csv"], ["-o", "no/out.csv: folder", "does not exist"]),
    (["{loose_ckpt}", "{test}"], ["no config.yaml (--config) and classes.json (--classes) found"]),
    (["{loose_ckpt}", "{test}", "--classes", "{run}/classes.json"], ["no config.yaml (--config) found"]),
    (["{ckpt}", "{test}", "--config", "{tmp}/none.yaml"], ["--config", "none.yaml: no such file"]),
])
def test_bad_input_exits_2_with_one_paragraph(models, tmp_path, args, words):
    (tmp_path / "m.h5").write_bytes(b"x")
    loose = tmp_path / "loose" / "x.ckpt"
    loose.parent.mkdir()
    loose.write_bytes(models["ckpt"].read_bytes())
    subst = {"tmp": str(tmp_path), "test": str(models["test"]), "ckpt": str(models["ckpt"]),
             "loose_ckpt": str(loose), "run": str(models["run"])}
    rc, stdout, err = cli(*(a.format(**subst) for a in args))
    assert rc == 2
    assert stdout == ""
    one_paragraph(err, *words)


def test_a_missing_onnxruntime_is_one_error_naming_the_extra(models, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_onnxruntime(name, *a, **kw):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    rc, _, err = cli(str(models["onnx"]), str(models["test"]))
    assert rc == 2
    one_paragraph(err, "onnxruntime, which is not installed", "pip install 'wrn-launch[onnx]'")


def test_the_terminal_table_shows_the_first_rows_and_says_where_the_rest_are(models, tmp_path):
    from launcher.commands import predict as command

    many = tmp_path / "many"
    many.mkdir()
    src = next(models["test"].rglob("*.png"))
    for i in range(command.SHOW + command.SLACK + 1):
        (many / f"{i:03d}.png").write_bytes(src.read_bytes())
    rc, stdout, err = cli(str(models["mindir"]), str(many), "--top-k", "2")
    assert rc == 0, err
    assert "000.png" in stdout and f"{command.SHOW - 1:03d}.png" in stdout
    assert f"{command.SHOW:03d}.png" not in stdout
    assert f"... and {command.SLACK + 1} more image(s): pass -o FILE.csv or -o FILE.json" in stdout
    assert "top-2..2" in stdout
    assert "top-1 accuracy" not in stdout  # not labelled


# --------------------------------------------------------------------------- ModelZoo's acc.log


def test_accuracy_line_is_modelzoos():
    def pred(label, *top):
        return {"label_index": label, "top": [{"index": t} for t in top]}

    doc = {"classes": 10, "predictions": [pred(1, 1, 2, 3, 4, 5), pred(2, 1, 2, 3, 4, 5),
                                          pred(9, 1, 2, 3, 4, 5), pred(None, 1, 2, 3, 4, 5)]}
    assert accuracy_line(doc) == "Total data: 3, top1 accuracy: 0.3333333333333333, top5 accuracy: 0.6666666666666666."
    doc["predictions"] = [pred(1, 1, 2)]  # --top-k 2 of 10 classes: no top-5
    assert accuracy_line(doc) == "Total data: 1, top1 accuracy: 1.0."
    doc["classes"] = 2
    assert accuracy_line(doc) == "Total data: 1, top1 accuracy: 1.0, top5 accuracy: 1.0."
    with pytest.raises(PredictError, match="no labelled image"):
        accuracy_line({"predictions": [pred(None, 1)]})


# --------------------------------------------------------------------------- properties


def _parse(*args: str):
    """The CLI parser on ``predict`` args: (namespace or None, stderr)."""
    from launcher.cli import build_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return build_parser().parse_args(["predict", "m.onnx", "imgs", *args]), err.getvalue()
        except SystemExit as exc:
            assert exc.code == 2
            return None, err.getvalue()


numbers = st.one_of(st.integers(-10**6, 10**6).map(str), st.text(max_size=12),
                    st.sampled_from(["1e3", "0x10", "\u0663", "\uff15", "1.0", " 7 ", "+4", "-0", "1" * 400]))


@FUZZ
@given(numbers, st.sampled_from(["--top-k", "--top_k", "--batch-size", "--batch_size"]))
def test_top_k_and_batch_size_are_whole_numbers_from_1_or_one_usage_line(text, flag):
    args, err = _parse(flag, text)
    dest = "top_k" if "top" in flag else "batch_size"
    if args is None:
        assert err.count("\n") == 1 and "error: " in err and flag.replace("_", "-")[:6] in err.replace("_", "-")
        assert "Traceback" not in err
    else:
        value = getattr(args, dest)
        assert isinstance(value, int) and value >= 1
        assert value == int(text)


@FUZZ
@given(st.text(max_size=20), st.sampled_from(["", ".csv", ".json", ".CSV", ".Json", ".txt", ".csv.gz"]))
def test_output_must_end_in_csv_or_json(stem, suffix):
    name = stem + suffix
    args, err = _parse("-o", name) if not name.startswith("-") else _parse(f"--output={name}")
    ok = name.lower().endswith((".csv", ".json"))
    if ok:
        assert args is not None and args.output == name
    else:
        assert args is None and "must end in .csv or .json" in err and err.count("\n") == 1
