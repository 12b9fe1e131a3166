"""Checkpoints: atomic writes, verification on load, pruning, failures that keep old files."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from wrn import checkpoint
from wrn.config import TrainConfig
from wrn.models import build_model
from wrn.steps import make_loss, make_optimizer, make_train_step

pytestmark = pytest.mark.usefixtures("mindspore_cpu_pynative")


def _cell(num_classes=4):
    ms.set_seed(1)
    net = build_model("wrn10_2", num_classes, 16)
    step = make_train_step(net, make_loss(), make_optimizer(net, TrainConfig(), 0.1))
    return net, step


META = {"epoch": 2, "step": 5, "global_step": 25, "world_size": 2, "seed": 1, "steps_per_epoch": 10,
        "config_hash": "abc123", "model": "wrn10_2"}


def test_round_trip_keeps_params_momentum_and_meta(tmp_path):
    net, step = _cell()
    for p in step.get_parameters():  # make momentum non-zero and distinctive
        if p.name.startswith("moments."):
            p.set_data(ms.Tensor(np.full(p.shape, 0.25, np.float32)))
    path = checkpoint.save(step, tmp_path, "m", META)
    assert path.name == "m-e0002-s000005.ckpt"
    assert json.loads((tmp_path / "latest.json").read_text())["path"] == path.name
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    _, fresh = _cell()
    meta = checkpoint.load(path, fresh)
    assert meta == META
    a = {p.name: p.asnumpy() for p in step.get_parameters()}
    b = {p.name: p.asnumpy() for p in fresh.get_parameters()}
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(k.startswith("moments.") for k in a)
    assert "global_step" in a


def test_truncated_and_flipped_files_never_load(tmp_path):
    _, step = _cell()
    path = checkpoint.save(step, tmp_path, "m", META)
    data = path.read_bytes()
    for cut in (10, len(data) // 3, len(data) // 2, len(data) - 200, len(data) - 1):
        bad = tmp_path / f"cut{cut}.ckpt"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="cut"):
            checkpoint.load(bad, _cell()[1])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    bad = tmp_path / "flip.ckpt"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ValueError):
        checkpoint.load(bad, _cell()[1])


def test_scan_reads_names_and_checks_crc_without_loading(tmp_path):
    _, step = _cell()
    path = checkpoint.save(step, tmp_path, "m", META)
    names, size = checkpoint.scan_checkpoint(path, chunk=4096)  # small chunks: records span reads
    assert names == set(ms.load_checkpoint(str(path)))
    assert size == path.stat().st_size
    data = path.read_bytes()
    for cut in (0, 5, len(data) // 2, len(data) - 17, len(data) - 1):
        bad = tmp_path / f"cut{cut}.ckpt"
        bad.write_bytes(data[:cut])
        with pytest.raises(OSError, match=f"cut{cut}.ckpt"):
            checkpoint.scan_checkpoint(bad)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40  # inside some tensor's bytes: only the CRC can tell
    (tmp_path / "flip.ckpt").write_bytes(bytes(flipped))
    with pytest.raises(OSError, match="CRC mismatch"):
        checkpoint.scan_checkpoint(tmp_path / "flip.ckpt")


def test_file_is_byte_identical_to_mindspores(tmp_path):
    """Our writer produces exactly what mindspore.save_checkpoint writes for the same cell and
    metadata (params, momentum, Int32 counter, Int64 and unicode string metadata, CRC)."""
    _, step = _cell()
    for p in step.get_parameters():
        if p.name.startswith("moments."):
            p.set_data(ms.Tensor(np.full(p.shape, 0.25, np.float32)))
    meta = META | {"note": "größe π", "big": 2 ** 40}
    ours = checkpoint.save(step, tmp_path, "m", meta)
    theirs = tmp_path / "ms.ckpt"
    ms.save_checkpoint(step, str(theirs), append_dict=checkpoint._meta_entries(meta),
                       crc_check=True)
    assert ours.read_bytes() == theirs.read_bytes()


def test_saved_file_passes_scan_and_mindspores_crc_check(tmp_path):
    """Incl. one tensor as big as WRN-50-2's classifier (2048 x 2388 float32, 19.6 MB)."""
    dense = nn.Dense(2048, 2388)
    for cell in (_cell()[1], dense):
        path = checkpoint.save(cell, tmp_path, "s", META)
        names, size = checkpoint.scan_checkpoint(path)
        loaded = ms.load_checkpoint(str(path), crc_check=True)
        assert names == set(loaded)
        assert size == path.stat().st_size
        for p in cell.get_parameters():
            assert loaded[p.name].dtype == p.dtype
            assert np.array_equal(loaded[p.name].asnumpy(), p.asnumpy()), p.name
        assert loaded["wrn_meta_config_hash"] == "abc123"
        assert int(loaded["wrn_meta_step"].asnumpy()) == 5


def test_tensors_split_into_several_records_load_whole(tmp_path, monkeypatch):
    """MindSpore splits tensors over 512 MiB into records; ours split the same way load back."""
    monkeypatch.setattr(checkpoint, "_RECORD_BYTES", 1000)
    _, step = _cell()
    path = checkpoint.save(step, tmp_path, "m", META)
    names, _ = checkpoint.scan_checkpoint(path)
    loaded = ms.load_checkpoint(str(path), crc_check=True)
    assert names == set(loaded)
    for p in step.get_parameters():
        assert np.array_equal(loaded[p.name].asnumpy(), p.asnumpy()), p.name


def test_cells_our_writer_declines_are_saved_by_mindspore(tmp_path, monkeypatch):
    _, step = _cell()
    monkeypatch.setattr(checkpoint, "_entries", lambda cell, extra: None)
    path = checkpoint.save(step, tmp_path, "m", META)
    assert oct(path.stat().st_mode & 0o777) == "0o400"
    assert checkpoint.load(path, _cell()[1]) == META


@pytest.mark.parametrize("where", ["write", "sync"])
def test_failure_mid_save_leaves_no_temp_file_nor_thread(tmp_path, monkeypatch, where):
    """A write failing part-way (disk full), or the data sync failing (I/O error)."""
    import threading

    _, step = _cell()
    first = checkpoint.save(step, tmp_path, "m", META | {"step": 1})
    if where == "write":
        payload, calls = checkpoint._payload, []

        def failing(source):
            calls.append(source)
            if len(calls) == 20:
                raise OSError(28, "No space left on device")
            return payload(source)

        monkeypatch.setattr(checkpoint, "_payload", failing)
    else:
        def failing(fd):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError, match=r"could not write checkpoint .*m-e0002-s000009\.ckpt"):
        checkpoint.save(step, tmp_path, "m", META | {"step": 9})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", first.name]
    assert not [t for t in threading.enumerate() if t.name.startswith("checkpoint-")]
    assert checkpoint.load(first, _cell()[1])["step"] == 1


def test_saved_file_is_read_only_and_save_still_works_as_non_root(tmp_path):
    """MindSpore leaves the file 0400; the fsync must not need write access (non-root users)."""
    _, step = _cell()
    first = checkpoint.save(step, tmp_path, "m", META)
    assert oct(first.stat().st_mode & 0o777) == "0o400"
    if os.geteuid() == 0:
        shared = Path(tempfile.mkdtemp())  # under /tmp: reachable for the unprivileged user
        shared.chmod(0o777)
        pid = os.fork()
        if pid == 0:  # the same save as an unprivileged user, in a child
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                checkpoint.save(step, shared, "n", META)
                code = 0
            except BaseException as exc:  # shown in the failing test's captured output
                print(f"save as uid 65534 failed: {exc!r}", flush=True)
            finally:
                os._exit(code)
        status = os.waitpid(pid, 0)[1]
        shutil.rmtree(shared)
        assert status == 0


def test_other_model_is_refused(tmp_path):
    _, step = _cell(4)
    path = checkpoint.save(step, tmp_path, "m", META)
    with pytest.raises(ValueError, match="does not fit|incomplete"):
        checkpoint.load(path, _cell(7)[1])


def test_keep_max_prunes_oldest_but_never_the_new_one(tmp_path):
    _, step = _cell()
    for epoch in range(1, 5):
        checkpoint.save(step, tmp_path, "m", META | {"epoch": epoch, "step": 10}, keep=2)
    names = [p.name for p in checkpoint.list_checkpoints(tmp_path)]
    assert names == ["m-e0003-s000010.ckpt", "m-e0004-s000010.ckpt"]
    checkpoint.save(step, tmp_path, "m", META | {"epoch": 5, "step": 10}, keep=1)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["m-e0005-s000010.ckpt"]


def _small_fs(path):
    """A 200 KiB tmpfs (root) -- else a read-only directory (ordinary users)."""
    path.mkdir()
    if os.geteuid() == 0:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(path)])
        if res.returncode == 0:
            return lambda: subprocess.run(["umount", str(path)])
    return None


def test_failed_write_is_clear_and_keeps_earlier_checkpoints(tmp_path):
    small, step = _cell()
    target = tmp_path / "ckpts"
    unmount = _small_fs(target)
    try:
        if unmount is None:
            first = checkpoint.save(step, target, "m", META | {"step": 1})
            target.chmod(0o500)
        else:
            first = None
            tiny_net = nn.Dense(4, 2)  # a small checkpoint that fits
            first = checkpoint.save(tiny_net, target, "tiny", META | {"step": 1})
        with pytest.raises(OSError, match=r"could not write checkpoint .*m-e0002-s000009\.ckpt"):
            checkpoint.save(step, target, "m", META | {"step": 9})
        assert first.is_file()
        assert not [p for p in target.iterdir() if ".tmp" in p.name]
        if unmount is not None:
            checkpoint.load(first, nn.Dense(4, 2))
    finally:
        if unmount is not None:
            unmount()
        else:
            target.chmod(0o700)


def test_pretrained_drops_head_when_class_count_differs(tmp_path):
    net4, _ = _cell(4)
    path = checkpoint.save(net4, tmp_path, "p", META)
    net9 = build_model("wrn10_2", 9, 16)
    dropped = checkpoint.load_pretrained(path, net9)
    assert sorted(dropped) == ["fc.bias", "fc.weight"]
    same = {p.name: p.asnumpy() for p in net4.get_parameters()}
    for p in net9.get_parameters():
        if p.name not in dropped:
            assert np.array_equal(p.asnumpy(), same[p.name]), p.name
    with pytest.raises(ValueError, match="does not fit this model"):
        checkpoint.load_pretrained(path, build_model("wrn16_2", 4, 16))


def test_config_hash_tracks_maths_only():
    base = TrainConfig().to_dict()
    assert checkpoint.config_hash(base) == checkpoint.config_hash(base | {"log_interval": 99})
    assert checkpoint.config_hash(base) != checkpoint.config_hash(base | {"lr": 0.2})
