"""MindInsight summary records (``wrn.summary``): the framing, the protobuf, which rank writes
where, and that MindSpore reads the files (its ``summary_pb2``). That MindSpore writes the same
framing (in a process of its own) is in e2e/test_summary.py."""

from __future__ import annotations

import struct

import pytest

from wrn.summary import (
    NullSummary,
    SummaryLog,
    crc32c,
    encode_scalars_event,
    frame,
    masked_crc,
    open_summary,
    read_records,
    read_summary,
    summary_dir,
)


def test_crc32c_known_values():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(b"") == 0
    assert masked_crc(b"") == 0xA282EAD8


def test_frame_round_trip_and_corruption(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(frame(b"hello") + frame(b""))
    assert read_records(path) == [b"hello", b""]
    data = bytearray(path.read_bytes())
    data[13] ^= 0xFF  # a payload byte
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad or truncated record"):
        read_records(path)
    path.write_bytes(frame(b"hello")[:-2])
    with pytest.raises(ValueError):
        read_records(path)


def test_summary_log_writes_scalars_from_events(tmp_path):
    with SummaryLog(tmp_path / "s", rank=0, host="node1", now=1767225600.0) as log:
        log.on_event("step", epoch=1, step=10, global_step=10, loss=2.25, lr=0.1, imgs_per_s=40.0,
                     data_wait_s=0.1)
        log.on_event("epoch_end", epoch=1, loss=2.0, seconds=3.5, imgs_per_s=35.0)
        log.on_event("eval", epoch=1, top1=0.5, correct=5, total=10, loss=1.25)
        log.on_event("checkpoint", epoch=1, path="x")  # nothing to plot
        log.scalars(20, loss=float("nan"), lr="0.05", bad=None)
    assert log.path.name == "events.out.events.summary.1767225600.0.node1_MS"
    version, records = read_summary(log.path)
    assert version == "MindSpore.Event:1"
    assert [(step, values) for step, _wall, values in records] == [
        (10, {"loss": 2.25, "lr": pytest.approx(0.1), "imgs_per_s": 40.0}),
        (10, {"epoch_loss": 2.0, "epoch_imgs_per_s": 35.0, "epoch_seconds": 3.5}),
        (10, {"eval_top1": 0.5, "eval_loss": 1.25}),
        (20, {"lr": pytest.approx(0.05)}),
    ]
    log.close()  # twice: nothing happens
    log.scalars(30, loss=1.0)  # after close: ignored
    assert len(read_summary(log.path)[1]) == 4


def test_which_rank_writes_where(tmp_path):
    run = tmp_path / "wrn-sample-20260101-000000"
    assert summary_dir(run, "./summary") == run / "summary"
    assert summary_dir(run, str(tmp_path / "all")) == tmp_path / "all" / run.name
    assert isinstance(open_summary(run, "./summary", rank=1), NullSummary)
    assert isinstance(open_summary(run, "", rank=0), NullSummary)
    log = open_summary(run, "./summary", rank=0, host="h")
    assert isinstance(log, SummaryLog)
    assert log.path.parent == run / "summary"
    log.close()
    (tmp_path / "file").write_text("x")
    assert isinstance(open_summary(tmp_path / "file", "summary", rank=0), NullSummary)
    null = NullSummary()
    with null as n:
        n.scalars(1, loss=1.0)
        n.on_event("step", loss=1.0)
        n.flush()


def test_big_step_numbers_encode():
    payload = encode_scalars_event(1.0, 2 ** 40, {"x": 1.0})
    assert struct.pack("<d", 1.0) in payload
    assert b"x" in payload


def test_mindspore_parses_the_records(tmp_path):
    pb = pytest.importorskip("mindspore.train.summary_pb2")
    with SummaryLog(tmp_path, host="h", now=1767225600.0) as log:
        log.scalars(7, wall_time=1767225601.5, loss=0.75, eval_top1=0.5)
    first, second = read_records(log.path)
    event = pb.Event()
    event.ParseFromString(first)
    assert event.version == "MindSpore.Event:1"
    assert event.wall_time == 1767225600.0
    event = pb.Event()
    event.ParseFromString(second)
    assert event.step == 7
    assert event.wall_time == 1767225601.5
    assert [(v.tag, v.scalar_value) for v in event.summary.value] == [("loss", 0.75), ("eval_top1", 0.5)]
    assert event.SerializeToString() == second  # byte for byte what protobuf itself writes


def test_two_writers_in_one_second_get_two_files(tmp_path):
    with SummaryLog(tmp_path, host="h", now=100.0) as a, SummaryLog(tmp_path, host="h", now=100.0) as b:
        assert a.path != b.path
        assert b.path.name == "events.out.events.summary.101.0.h_MS"
