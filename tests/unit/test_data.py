"""Tests for the RP2K reader: data path checks (wrn.datapath), class index (wrn.classindex),
scanning (wrn.scan, wrn.splits), sharding (wrn.shards) and the pipelines (wrn.pipeline).

Everything runs on real files written into tmp_path; the pipeline tests run MindSpore's
dataset engine on CPU with tiny images.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support import REPO
from wrn import synth
from wrn.classindex import build_class_index, load_class_index, save_class_index
from wrn.config import BUILTIN_DATA, ConfigError
from wrn.datapath import DataError, check_data_path, resolve_data_path
from wrn.pipeline import augmentation_seed, eval_dataset, train_dataset
from wrn.shards import shard_indices, steps_per_epoch
from wrn.splits import Split, scan_split

UNICODE_CLASSES = [
    "可口可乐（300ml）", "农夫山泉 550ml", "纯牛奶100%", "薯片+番茄味", "维他柠檬茶.原味",
]


def _encode(fmt: str, size=(20, 16), colour=(200, 30, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def _write(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def _jpeg(path: Path, **kw) -> Path:
    return _write(path, _encode("JPEG", **kw))


def _png(path: Path, **kw) -> Path:
    return _write(path, _encode("PNG", **kw))


def _labelled_by_index(split: Split) -> Split:
    """The same files, each with its own class, so a label in a batch names the sample."""
    n = len(split)
    return Split(files=split.files, labels=np.arange(n), classes=[f"s{i}" for i in range(n)])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A small generated set: 4 classes, 10 train (+1 corrupt) and 3 test images each."""
    root = tmp_path_factory.mktemp("tiny")
    synth.generate(root, num_classes=4, train_per_class=10, test_per_class=3, seed=7)
    return root


# --------------------------------------------------------------------------- data path


def test_missing_data_path_names_key_path_and_fix(tmp_path):
    missing = tmp_path / "nope"
    for call in (check_data_path, resolve_data_path):
        with pytest.raises(ConfigError) as err:
            call(str(missing))
        msg = str(err.value)
        assert "data_path" in msg
        assert str(missing) in msg
        assert "does not exist" in msg
        assert "--set data_path=" in msg


def test_missing_train_folder_names_it(tmp_path):
    (tmp_path / "test" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError) as err:
        check_data_path(str(tmp_path))
    msg = str(err.value)
    assert "data_path" in msg
    assert str(tmp_path) in msg
    assert "train/" in msg


def test_data_path_hints_at_parent_when_pointing_into_train(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match="did you mean"):
        check_data_path(str(tmp_path / "train"))


def test_data_path_that_is_a_file(tmp_path):
    f = _write(tmp_path / "x.txt", b"hi")
    with pytest.raises(ConfigError, match="not a directory"):
        check_data_path(str(f))


def test_valid_and_builtin_data_paths(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    check_data_path(str(tmp_path))
    check_data_path(BUILTIN_DATA)  # accepted without generating anything
    assert resolve_data_path(str(tmp_path)) == tmp_path.resolve()


def test_import_does_not_load_mindspore():
    code = ("import sys, wrn.datapath, wrn.classindex, wrn.images, wrn.scan, wrn.splits, wrn.shards, "
            "wrn.pipeline; assert 'mindspore' not in sys.modules, 'mindspore imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_the_launchers_and_the_scan_helpers_modules_do_not_load_numpy():
    """The launcher and its pre-flight probe import wrn.datapath; a scan helper that is spawned
    imports wrn.scan: neither pays for numpy."""
    code = ("import sys, wrn.datapath, wrn.classindex, wrn.images, wrn.scan; "
            "assert 'numpy' not in sys.modules, 'numpy imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# --------------------------------------------------------------------------- class index


def test_class_index_sorted_and_unicode_round_trip(tmp_path):
    for name in UNICODE_CLASSES:
        _jpeg(tmp_path / "train" / name / "a.jpg")
    (tmp_path / "train" / ".hidden").mkdir()
    classes = build_class_index(tmp_path)
    assert classes == sorted(UNICODE_CLASSES)
    path = save_class_index(classes, tmp_path)
    assert path == tmp_path / "classes.json"
    text = path.read_text(encoding="utf-8")
    assert "（300ml）" in text
    assert "\\u" not in text  # stored readable, not escaped
    assert json.loads(text) == classes
    assert load_class_index(path) == classes
    assert load_class_index(tmp_path) == classes
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".classes")]  # no temp left


def test_class_index_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_class_index(tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        build_class_index(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_class_index(tmp_path / "missing.json")
    _write(tmp_path / "bad.json", json.dumps(["a", "a"]).encode())
    with pytest.raises(DataError, match="duplicate"):
        load_class_index(tmp_path / "bad.json")
    with pytest.raises(ValueError):
        save_class_index([], tmp_path / "c.json")


# --------------------------------------------------------------------------- scanning


def test_scan_finds_all_formats_and_ignores_other_files(tmp_path):
    folder = tmp_path / "train" / "纯牛奶100%"
    names = ["a.jpg", "b.JPG", "c.jpeg", "d.JPEG", "e.png", "f.PNG", "g.Png"]
    for name in names:
        (_jpeg if "j" in name.lower() else _png)(folder / name)
    for junk in ("notes.txt", "Thumbs.db", ".DS_Store", "h.gif", "i.jpg.bak"):
        _write(folder / junk, b"junk" * 40)
    _jpeg(tmp_path / "train" / "loose.jpg")  # not inside a class folder
    _jpeg(tmp_path / "train" / ".cache" / "x.jpg")  # hidden folder
    classes = build_class_index(tmp_path)
    assert classes == ["纯牛奶100%"]
    split = scan_split(tmp_path, "train", classes)
    assert [Path(f).name for f in split.files] == sorted(names)
    assert all(os.path.isabs(f) for f in split.files)
    assert split.labels.dtype == np.int32
    assert split.labels.tolist() == [0] * len(names)
    assert split.skipped == ()
    assert split.skip_message() is None


def test_scan_order_is_by_class_index_then_name(tmp_path):
    for cls in ("b", "a", "c"):
        for name in ("2.jpg", "10.jpg", "1.png"):
            _jpeg(tmp_path / "train" / cls / name) if name.endswith("jpg") else _png(tmp_path / "train" / cls / name)
    classes = ["c", "a", "b"]  # an index need not be sorted; the scan follows it
    split = scan_split(tmp_path, "train", classes)
    got = [(Path(f).parent.name, Path(f).name) for f in split.files]
    assert got == [(c, n) for c in classes for n in sorted(["2.jpg", "10.jpg", "1.png"])]
    assert split.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_corrupt_files_are_skipped_and_counted(tmp_path):
    folder = tmp_path / "train" / "c"
    good_jpeg, good_png = _encode("JPEG", size=(64, 48)), _encode("PNG", size=(64, 48))
    _write(folder / "good.jpg", good_jpeg)
    _write(folder / "good.png", good_png)
    _write(folder / "trunc.jpg", good_jpeg[: len(good_jpeg) // 2])
    _write(folder / "random.jpg", np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    _write(folder / "trunc.png", good_png[: len(good_png) - 20])
    _write(folder / "empty.jpg", b"")
    # structurally fine (right head and end marker) but the data in between is garbage
    garbage = np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    _write(folder / "undecodable.jpg", b"\xff\xd8\xff\xe0" + garbage + b"\xff\xd9")
    _write(folder / "png_named.jpg", good_png)  # wrong extension, fine content: kept

    quick = scan_split(tmp_path, "train", ["c"], verify="quick")
    assert sorted(Path(f).name for f in quick.files) == ["good.jpg", "good.png", "png_named.jpg", "undecodable.jpg"]
    reasons = {Path(p).name: why for p, why in quick.skipped}
    assert set(reasons) == {"trunc.jpg", "random.jpg", "trunc.png", "empty.jpg"}
    assert "truncated JPEG" in reasons["trunc.jpg"]
    assert "truncated PNG" in reasons["trunc.png"]
    assert "empty" in reasons["empty.jpg"]
    assert "not a JPEG or PNG" in reasons["random.jpg"]
    msg = quick.skip_message(limit=2)
    assert msg.startswith("skipped 4 ")
    assert "and 2 more" in msg

    full = scan_split(tmp_path, "train", ["c"], verify="full")
    assert sorted(Path(f).name for f in full.files) == ["good.jpg", "good.png", "png_named.jpg"]
    assert "undecodable.jpg" in {Path(p).name for p, _ in full.skipped}

    off = scan_split(tmp_path, "train", ["c"], verify="off")
    assert len(off) == 8
    assert off.skipped == ()
    with pytest.raises(ValueError, match="verify"):
        scan_split(tmp_path, "train", ["c"], verify="fast")


def test_test_split_uses_train_index_even_with_missing_classes(tmp_path):
    for cls in ("apple", "banana", "cherry", "date"):
        _jpeg(tmp_path / "train" / cls / "t.jpg")
    _jpeg(tmp_path / "test" / "date" / "x.jpg")
    _png(tmp_path / "test" / "banana" / "y.png")
    classes = build_class_index(tmp_path)
    test = scan_split(tmp_path, "test", classes)
    got = {Path(f).parent.name: int(lab) for f, lab in zip(test.files, test.labels)}
    assert got == {"banana": classes.index("banana"), "date": classes.index("date")} == {"banana": 1, "date": 3}
    assert test.classes == tuple(classes)


def test_unknown_test_class_is_an_error(tmp_path):
    _jpeg(tmp_path / "train" / "a" / "t.jpg")
    _jpeg(tmp_path / "test" / "a" / "t.jpg")
    _jpeg(tmp_path / "test" / "雪碧（新）" / "t.jpg")
    with pytest.raises(DataError, match="雪碧（新）"):
        scan_split(tmp_path, "test", build_class_index(tmp_path))


def test_empty_or_missing_split_is_an_error(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    _write(tmp_path / "train" / "a" / "readme.txt", b"no images here")
    with pytest.raises(DataError) as err:
        scan_split(tmp_path, "train", ["a"])
    assert str(tmp_path / "train") in str(err.value)
    assert "no usable images" in str(err.value)
    _write(tmp_path / "train" / "a" / "bad.jpg", b"\xff\xd8\xff" + b"\0" * 100)
    with pytest.raises(DataError, match="failed the quick check"):
        scan_split(tmp_path, "train", ["a"])
    with pytest.raises(DataError, match="does not exist"):
        scan_split(tmp_path, "test", ["a"])


# --------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("n,world,batch", [(600, 7, 8), (600, 1, 32), (1000, 4, 16), (101, 3, 5), (16, 2, 8)])
def test_shards_disjoint_covering_equal_steps(n, world, batch):
    steps = steps_per_epoch(n, world, batch)
    assert steps == (n // world) // batch
    for epoch in (0, 1):
        shards = [shard_indices(n, world, r, seed=3, epoch=epoch) for r in range(world)]
        joined = np.concatenate(shards)
        assert len(joined) == n
        assert sorted(joined.tolist()) == list(range(n))  # disjoint + covering
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        assert all(len(s) >= steps * batch for s in shards)  # every rank can fill every step
        for r in range(world):  # deterministic per (seed, epoch)
            assert np.array_equal(shards[r], shard_indices(n, world, r, seed=3, epoch=epoch))
    e0 = shard_indices(n, world, 0, seed=3, epoch=0)
    e1 = shard_indices(n, world, 0, seed=3, epoch=1)
    assert not np.array_equal(e0, e1)
    assert not np.array_equal(e0, shard_indices(n, world, 0, seed=4, epoch=0))


def test_unshuffled_shard_is_strided():
    assert shard_indices(10, 3, 1, seed=0, epoch=5, shuffle=False).tolist() == [1, 4, 7]


def test_too_small_dataset_and_bad_arguments():
    with pytest.raises(ValueError, match="fewer than world size x batch size"):
        steps_per_epoch(100, 4, 32)
    with pytest.raises(ValueError):
        shard_indices(10, 2, 2, seed=0, epoch=0)
    with pytest.raises(ValueError):
        shard_indices(10, 2, 0, seed=-1, epoch=0)


# --------------------------------------------------------------------------- pipelines


def _run_epochs(dataset, epochs):
    it = dataset.create_tuple_iterator(num_epochs=epochs, output_numpy=True)
    return [[(x, y) for x, y in it] for _ in range(epochs)]


def test_train_dataset_shapes_steps_and_disjoint_ranks(tiny):
    classes = build_class_index(tiny)
    split = scan_split(tiny, "train", classes)
    assert len(split) == 40
    assert len(split.skipped) == 1  # the generator's one corrupt file
    indexed = _labelled_by_index(split)
    world, batch, size, seed = 2, 4, 24, 11
    seen = {}
    for rank in range(world):
        ds, steps = train_dataset(indexed, rank=rank, world=world, batch_size=batch, image_size=size,
                                  seed=seed, num_workers=2, crop_min_scale=0.5)
        assert steps == 5
        assert ds.get_dataset_size() == steps
        assert ds.wrn_source.started == 0  # the size is known without a counting pass
        ds.output_shapes()  # MindSpore probes the source; that must not advance the epoch
        assert ds.wrn_source.completed == 0
        for epoch, batches in enumerate(_run_epochs(ds, 2)):
            assert len(batches) == steps
            for x, y in batches:
                assert x.shape == (batch, 3, size, size)
                assert x.dtype == np.float32
                assert y.shape == (batch,)
                assert y.dtype == np.int32
            got = np.concatenate([y for _, y in batches])
            assert got.tolist() == shard_indices(40, world, rank, seed, epoch)[: steps * batch].tolist()
            seen[rank, epoch] = set(got.tolist())
    for epoch in (0, 1):
        assert not seen[0, epoch] & seen[1, epoch]
    assert seen[0, 0] != seen[0, 1]  # a new permutation every epoch


def test_train_dataset_real_labels_and_normalisation(tiny):
    classes = build_class_index(tiny)
    split = scan_split(tiny, "train", classes)
    ds, steps = train_dataset(split, rank=0, world=1, batch_size=8, image_size=16, seed=0, num_workers=1)
    (batches,) = _run_epochs(ds, 1)
    labels = np.concatenate([y for _, y in batches])
    assert len(batches) == steps == 5
    assert set(labels.tolist()) <= set(range(len(classes)))
    x = np.concatenate([x for x, _ in batches])
    assert -3.0 < x.min() < 0.0 < x.max() < 3.0  # ImageNet-normalized 0..255 pixels


def test_train_dataset_resume_skips_steps_in_first_epoch_only(tiny):
    split = _labelled_by_index(scan_split(tiny, "train", build_class_index(tiny)))
    ds, steps = train_dataset(split, rank=1, world=2, batch_size=4, image_size=16, seed=5, num_workers=2,
                              start_epoch=3, skip_steps=2)
    assert ds.get_dataset_size() == steps
    first, second = _run_epochs(ds, 2)
    assert len(first) == steps - 2
    assert len(second) == steps
    full3 = shard_indices(40, 2, 1, 5, 3)[: steps * 4]
    assert np.concatenate([y for _, y in first]).tolist() == full3[8:].tolist()
    assert np.concatenate([y for _, y in second]).tolist() == shard_indices(40, 2, 1, 5, 4)[: steps * 4].tolist()
    # a new iterator continues with the next epoch and does not skip again
    (third,) = _run_epochs(ds, 1)
    assert np.concatenate([y for _, y in third]).tolist() == ds.wrn_source.epoch_indices(5).tolist()
    with pytest.raises(ValueError, match="skip_steps"):
        train_dataset(split, rank=0, world=2, batch_size=4, image_size=16, seed=5, num_workers=1, skip_steps=5)


def test_train_dataset_sets_the_augmentation_seed_of_its_first_epoch(tiny):
    import mindspore.dataset as msds

    split = scan_split(tiny, "train", build_class_index(tiny))
    train_dataset(split, rank=1, world=2, batch_size=4, image_size=16, seed=5, num_workers=1,
                  start_epoch=3)
    assert msds.config.get_seed() == augmentation_seed(5, 1, 3)
    assert len({augmentation_seed(5, 1, 3), augmentation_seed(5, 0, 3), augmentation_seed(5, 1, 4),
                augmentation_seed(6, 1, 3)}) == 4
    # the value the training loop used to set itself (seed * 100003 + 1-based epoch, rank)
    old = np.random.SeedSequence([5 * 100003 + 4, 1, 0x5EED]).generate_state(1)[0]
    assert augmentation_seed(5, 1, 3) == old


@pytest.mark.parametrize("workers", [1, 2])
def test_replayed_skip_keeps_the_crops_of_an_uninterrupted_pass(tiny, workers):
    import mindspore.dataset as msds

    split = _labelled_by_index(scan_split(tiny, "train", build_class_index(tiny)))
    kw = dict(rank=1, world=2, batch_size=4, image_size=16, seed=5, num_workers=workers,
              crop_min_scale=0.2, start_epoch=3)
    fast = msds.config.get_fast_recovery()
    try:
        (whole,) = _run_epochs(train_dataset(split, **kw)[0], 1)
        (replayed,) = _run_epochs(train_dataset(split, **kw, skip_steps=2, replay_skipped=True)[0], 1)
        (at_source,) = _run_epochs(train_dataset(split, **kw, skip_steps=2)[0], 1)
    finally:
        msds.config.set_fast_recovery(fast)
    assert len(whole) == 5
    assert len(replayed) == len(at_source) == 3
    for (x, y), (xr, yr), (_, ys) in zip(whole[2:], replayed, at_source):
        assert np.array_equal(y, yr)  # the same samples either way
        assert np.array_equal(y, ys)
        assert np.array_equal(x, xr)  # replayed: bitwise the crops of the uninterrupted pass
    # left out at the source (never decoded), the random stream starts later: other crops
    assert not all(np.array_equal(x, xs) for (x, _), (xs, _) in zip(whole[2:], at_source))


def test_train_dataset_replaces_undecodable_files(tmp_path, tiny):
    # a file that passes the quick check but cannot be decoded must not change the batch count
    split = scan_split(tiny, "train", build_class_index(tiny))
    bad = _write(tmp_path / "bad.jpg", b"\xff\xd8\xff\xe0" + b"\x13" * 500 + b"\xff\xd9")
    files = (str(bad),) + split.files[:15]
    broken = Split(files=files, labels=np.zeros(16), classes=["x"])
    ds, steps = train_dataset(broken, rank=0, world=1, batch_size=4, image_size=16, seed=0, num_workers=2)
    for batches in _run_epochs(ds, 2):
        assert len(batches) == steps == 4


def test_train_dataset_caps_workers_to_cpu_count(tiny):
    split = scan_split(tiny, "train", build_class_index(tiny))
    ds, steps = train_dataset(split, rank=0, world=1, batch_size=8, image_size=16, seed=0,
                              num_workers=(os.cpu_count() or 1) + 3)
    assert len(_run_epochs(ds, 1)[0]) == steps


@pytest.mark.parametrize("world,batch", [(1, 8), (3, 4), (7, 4)])
def test_eval_dataset_covers_split_exactly_once(tiny, world, batch):
    split = scan_split(tiny, "test", build_class_index(tiny))
    assert len(split) == 12
    indexed = _labelled_by_index(split)
    real = []
    for rank in range(world):
        ds, num_real = eval_dataset(indexed, rank=rank, world=world, batch_size=batch, image_size=20, num_workers=2)
        (batches,) = _run_epochs(ds, 1)
        labels = np.concatenate([y for _, y in batches])
        assert all(x.shape == (batch, 3, 20, 20) and x.dtype == np.float32 for x, _ in batches)
        assert labels.dtype == np.int32
        assert len(labels) % batch == 0
        assert (labels >= 0).sum() == num_real == len(range(rank, 12, world))
        assert (labels[num_real:] == -1).all()  # padding only at the end
        real.extend(labels[labels >= 0].tolist())
    assert sorted(real) == list(range(12))


def test_eval_dataset_empty_share_gets_one_padding_batch(tiny):
    split = scan_split(tiny, "test", build_class_index(tiny))
    two = Split(files=split.files[:2], labels=split.labels[:2], classes=split.classes)
    ds, num_real = eval_dataset(two, rank=2, world=3, batch_size=4, image_size=16, num_workers=1)
    (batches,) = _run_epochs(ds, 1)
    assert num_real == 0
    assert len(batches) == 1
    assert batches[0][1].tolist() == [-1] * 4


def test_eval_dataset_can_be_iterated_again(tiny):
    split = scan_split(tiny, "test", build_class_index(tiny))
    ds, num_real = eval_dataset(split, rank=0, world=1, batch_size=5, image_size=16, num_workers=2)
    first, second = _run_epochs(ds, 2)
    assert num_real == 12
    assert len(first) == len(second) == 3
    for (x1, y1), (x2, y2) in zip(first, second):
        assert np.array_equal(y1, y2)
        assert np.allclose(x1, x2)
