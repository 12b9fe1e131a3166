"""Tests for wrn.synth: the built-in RP2K-format sample dataset."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support import REPO
from wrn import synth
from wrn.classindex import build_class_index
from wrn.config import BUILTIN_DATA
from wrn.datapath import resolve_data_path
from wrn.splits import scan_split


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("small")
    return root, synth.generate(root, num_classes=10, train_per_class=10, test_per_class=5, seed=3)


def test_class_names_are_rp2k_like(small):
    root, summary = small
    names = synth.class_names(10)
    assert summary["classes"] == names
    assert len(set(names)) == 10
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(names)
    assert sorted(p.name for p in (root / "test").iterdir()) == sorted(names)
    assert all(any(ord(ch) > 127 for ch in name) for name in names)
    joined = "".join(names)
    for ch in ("（", "）", " ", "%", "+", "."):
        assert ch in joined, ch
    assert len(synth.class_names(synth.MAX_CLASSES)) == synth.MAX_CLASSES
    with pytest.raises(ValueError):
        synth.class_names(synth.MAX_CLASSES + 1)


def test_same_seed_same_bytes_other_seed_differs(tmp_path, small):
    root, _ = small
    synth.generate(tmp_path / "again", num_classes=10, train_per_class=10, test_per_class=5, seed=3)
    assert _files(tmp_path / "again") == _files(root)
    synth.generate(tmp_path / "other", num_classes=10, train_per_class=10, test_per_class=5, seed=4)
    other = _files(tmp_path / "other")
    assert other.keys() == _files(root).keys()
    assert sum(other[k] != v for k, v in _files(root).items()) > 100


def test_exactly_one_corrupt_file_and_the_rest_decode(small):
    root, summary = small
    classes = build_class_index(root)
    train = scan_split(root, "train", classes, verify="full")
    test = scan_split(root, "test", classes, verify="full")
    assert [Path(p).relative_to(root).as_posix() for p, _ in train.skipped] == summary["corrupt"]
    assert len(summary["corrupt"]) == 1
    assert test.skipped == ()
    assert len(train) == summary["train"] == 100
    assert len(test) == summary["test"] == 50
    # the quick check alone already catches it
    assert len(scan_split(root, "train", classes, verify="quick").skipped) == 1


def test_mixed_formats_and_extension_case(small):
    root, _ = small
    files = [p for p in root.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".jpg", ".JPG", ".jpeg", ".png", ".PNG"}
    for p in files:
        head = p.read_bytes()[:8]
        if p.suffix.lower() == ".png":
            assert head == b"\x89PNG\r\n\x1a\n"
        else:
            assert head[:3] == b"\xff\xd8\xff"
    sizes = {Image.open(p).size for p in files if "corrupt" not in p.name}
    assert all(36 <= w <= 48 and 36 <= h <= 48 for w, h in sizes)
    assert len(sizes) > 10


def test_colour_alone_does_not_identify_the_class(small):
    # nearest class-mean on raw pixels must be far from perfect: the classes are shapes
    root, _ = small
    classes = build_class_index(root)

    def load(split):
        s = scan_split(root, split, classes)
        x = np.stack([np.asarray(Image.open(f).convert("RGB").resize((16, 16)), np.float32).ravel() for f in s.files])
        return x, s.labels

    xtr, ytr = load("train")
    xte, yte = load("test")
    means = np.stack([xtr[ytr == c].mean(0) for c in range(len(classes))])
    pred = ((xte[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == yte).mean() < 0.5


def test_generate_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        synth.generate(tmp_path, num_classes=1)
    with pytest.raises(ValueError):
        synth.generate(tmp_path, train_per_class=0)
    with pytest.raises(ValueError):
        synth.generate(tmp_path, size=(40, 30))


def _ensure_in_child(_: int) -> str:
    return str(synth.ensure_builtin())


def test_ensure_builtin_concurrent_processes_make_one_dataset(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv(synth.DATA_HOME_ENV, str(home))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        paths = pool.map(_ensure_in_child, range(3))
    target = home / synth.BUILTIN_NAME
    assert paths == [str(target)] * 3
    assert synth.is_complete(target)
    assert target.stat().st_mode & 0o755 == 0o755  # readable by other users, like any cache
    leftovers = [p.name for p in home.iterdir() if p.name != target.name and not p.name.endswith(".lock")]
    assert leftovers == []
    summary = json.loads((target / synth.COMPLETE_MARKER).read_text(encoding="utf-8"))
    assert summary["num_classes"] == 10
    assert summary["train"] == 1200
    assert summary["test"] == 300
    classes = build_class_index(target)
    assert len(scan_split(target, "train", classes)) == 1200
    # the config value resolves to the same folder, without generating again
    before = (target / synth.COMPLETE_MARKER).stat().st_mtime_ns
    assert resolve_data_path(BUILTIN_DATA) == target.resolve()
    assert (target / synth.COMPLETE_MARKER).stat().st_mtime_ns == before


def test_ensure_builtin_replaces_a_half_written_folder(tmp_path):
    target = tmp_path / "sample"
    (target / "train" / "junk").mkdir(parents=True)
    (target / "train" / "junk" / "x.jpg").write_bytes(b"partial")
    lines = []
    assert synth.ensure_builtin(target, log=lines.append) == target
    assert synth.is_complete(target)
    assert not (target / "train" / "junk").exists()
    assert len(lines) == 1
    assert synth.ensure_builtin(target, log=lines.append) == target
    assert len(lines) == 1  # no regeneration
    assert sorted(p.name for p in tmp_path.iterdir()) == [".sample.lock", "sample"]


def test_command_line(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "wrn.synth", str(out), "--classes", "3", "--seed", "2",
                           "--train-per-class", "2", "--test-per-class", "1"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    summary = json.loads(proc.stdout)
    assert summary["classes"] == synth.class_names(3)
    assert summary["seed"] == 2
    assert len(list((out / "train").rglob("*.*"))) == 3 * 2 + 1
    bad = subprocess.run([sys.executable, "-m", "wrn.synth", str(out), "--classes", "1"],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2
    assert "num_classes" in bad.stderr
