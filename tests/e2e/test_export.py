"""``wrn-launch export``: MINDIR reloads and predicts like the checkpoint, ONNX agrees with
onnxruntime, AIR is refused off Ascend, re-export replaces MindSpore's read-only files, and
bad input is one message. Uses a small WRN-10-2 checkpoint saved from a fresh network."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support import REPO
from tests.support.processes import fake_env
from wrn.config import dump_config, load_config
from wrn.export import (
    ExportError,
    check_format_supported,
    describe,
    export_checkpoint,
    find_run_config,
    normalise_format,
    output_path,
    predict_mindir,
    predict_onnx,
)

NUM_CLASSES = 4


@pytest.fixture(autouse=True)
def _keep_process_state():
    """Export configures MindSpore (device, graph mode) and may set variables in os.environ;
    give both back so other tests in this process see what they expect."""
    import mindspore as ms

    env, mode = dict(os.environ), ms.get_context("mode")
    yield
    os.environ.clear()
    os.environ.update(env)
    ms.set_context(mode=mode)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """RUN/config.yaml + RUN/checkpoints/<name>.ckpt of a fresh WRN-10-2 (4 classes, 32x32)."""
    import mindspore as ms

    from wrn import checkpoint
    from wrn.models import build_model

    run = tmp_path_factory.mktemp("run")
    cfg = load_config(None, [f"num_classes={NUM_CLASSES}", "model=wrn10_2", "image_size=32"])
    dump_config(cfg, run / "config.yaml")
    ms.set_seed(5)
    net = build_model("wrn10_2", NUM_CLASSES, 32)
    checkpoint.save(net, run / "checkpoints", "tiny", {"epoch": 1, "step": 4, "model": "wrn10_2"})
    return run


def ckpt_of(run: Path) -> Path:
    return next((run / "checkpoints").glob("*.ckpt"))


def reference_logits(ckpt: Path, images: np.ndarray) -> np.ndarray:
    import mindspore as ms

    from wrn import checkpoint
    from wrn.models import build_model

    net = build_model("wrn10_2", NUM_CLASSES, 32)
    checkpoint.load(ckpt, net)
    net.set_train(False)
    return net(ms.Tensor(images)).asnumpy()


def test_mindir_loads_and_predicts_the_same_classes(run_dir, tmp_path):
    ckpt = ckpt_of(run_dir)
    result = export_checkpoint(ckpt, "mindir", output=tmp_path / "wrn", batch_size=8, verify=True)
    assert result.path == tmp_path / "wrn.mindir"
    assert result.path.is_file()
    assert result.config == str(run_dir / "config.yaml")  # found beside checkpoints/
    assert (result.model, result.num_classes, result.input_shape) == ("wrn10_2", NUM_CLASSES, (8, 3, 32, 32))
    assert result.same_classes is True
    assert result.max_abs_diff == 0.0
    images = np.random.default_rng(1).random((8, 3, 32, 32), dtype=np.float32)
    got = predict_mindir(result.path, images)
    want = reference_logits(ckpt, images)
    assert np.array_equal(got.argmax(1), want.argmax(1))
    assert np.abs(got - want).max() == 0.0
    print(f"MINDIR {result.bytes} bytes, exported in {result.seconds:.2f} s")
    assert describe(result)[2].startswith("verified: same classes as the checkpoint: True")


def test_reexport_replaces_the_read_only_file(run_dir, tmp_path):
    ckpt = ckpt_of(run_dir)
    first = export_checkpoint(ckpt, "MINDIR", output=tmp_path)
    assert first.path == tmp_path / (ckpt.stem + ".mindir")
    assert not first.replaced
    assert not first.path.stat().st_mode & stat.S_IWUSR  # MindSpore writes 0400
    again = export_checkpoint(ckpt, "MINDIR", output=tmp_path, verify=True)
    assert again.replaced
    assert again.same_classes
    assert again.path == first.path
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.path.name]  # no temporary left


def test_onnx_matches_onnxruntime(run_dir, tmp_path):
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise  # the test extra installs it; CI must compare
        pytest.skip("onnxruntime is not installed (pip install -e '.[test]' installs it)")
    ckpt = ckpt_of(run_dir)
    result = export_checkpoint(ckpt, "ONNX", output=tmp_path / "wrn.onnx", batch_size=4, verify=True)
    assert result.path.suffix == ".onnx"
    assert result.same_classes is True
    assert result.max_abs_diff < 1e-5
    images = np.random.default_rng(2).random((4, 3, 32, 32), dtype=np.float32)
    got, want = predict_onnx(result.path, images), reference_logits(ckpt, images)
    assert np.array_equal(got.argmax(1), want.argmax(1))
    print(f"ONNX {result.bytes} bytes, exported in {result.seconds:.2f} s, max |diff| vs onnxruntime "
          f"{np.abs(got - want).max():.3g}")


def test_air_is_refused_off_ascend(run_dir, tmp_path):
    with pytest.raises(ExportError, match="--format AIR needs an Ascend host .* export MINDIR here"):
        export_checkpoint(ckpt_of(run_dir), "air", output=tmp_path / "x", device_target="CPU")
    assert list(tmp_path.iterdir()) == []
    check_format_supported("AIR", "Ascend")  # fine there
    check_format_supported("ONNX", "CPU")


def test_bad_input(run_dir, tmp_path):
    ckpt = ckpt_of(run_dir)
    with pytest.raises(ExportError, match="no such file"):
        export_checkpoint(tmp_path / "none.ckpt")
    with pytest.raises(ExportError, match="--format 'tflite': choose one of MINDIR, ONNX, AIR"):
        export_checkpoint(ckpt, "tflite")
    with pytest.raises(ExportError, match=r"does not fit this model: .*\(4, 128\) != \(10, 128\).*pass the "
                                          r"config the checkpoint was trained with"):
        export_checkpoint(ckpt, config=str(REPO / "configs" / "default.yaml"), output=tmp_path)
    with pytest.raises(ExportError, match="folder .*missing does not exist"):
        export_checkpoint(ckpt, output=tmp_path / "missing" / "m.mindir")
    with pytest.raises(ExportError, match="--batch-size 0"):
        export_checkpoint(ckpt, batch_size=0)
    assert list(tmp_path.iterdir()) == []


def test_paths_and_formats(run_dir, tmp_path, monkeypatch):
    ckpt = ckpt_of(run_dir)
    assert normalise_format(" onnx ") == "ONNX"
    assert find_run_config(ckpt) == run_dir / "config.yaml"
    assert find_run_config(tmp_path / "x.ckpt") is None
    monkeypatch.chdir(tmp_path)
    assert output_path(ckpt, "MINDIR") == tmp_path / (ckpt.stem + ".mindir")
    assert output_path(ckpt, "ONNX", "out/model") == tmp_path / "out" / "model.onnx"
    assert output_path(ckpt, "ONNX", "m.onnx") == tmp_path / "m.onnx"
    assert output_path(ckpt, "AIR", tmp_path) == tmp_path / (ckpt.stem + ".air")


@pytest.mark.slow  # among the longest of the fast tier: keeps `make test-fast` under 3 minutes
def test_cli(run_dir, tmp_path):
    ckpt = ckpt_of(run_dir)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "launcher.cli", "export", *args], cwd=tmp_path,
                              env=fake_env(), capture_output=True, text=True, timeout=120)

    res = cli(str(ckpt), "--format", "AIR")
    assert res.returncode == 2
    assert res.stdout == ""
    msg = res.stderr.strip()
    assert msg.startswith("wrn-launch export: error: --format AIR needs an Ascend host")
    assert "\n" not in msg
    res = cli(str(ckpt), "--file_format=MINDIR", "--verify", "--batch_size", "2")
    assert res.returncode == 0, res.stderr
    assert f"wrote {tmp_path / (ckpt.stem + '.mindir')} (MINDIR," in res.stdout
    assert "input 2x3x32x32 float32 NCHW" in res.stdout
    assert "verified: same classes as the checkpoint: True, max |logit difference| 0" in res.stdout
