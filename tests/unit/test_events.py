"""The event line format: written and read in wrn/contract.py only."""

import io
import json

import numpy as np
import pytest

from wrn import contract as events
from wrn.contract import EpochEnd, Error, Eval, Event, Step, WarningEvent, event_from, parse_event


def test_round_trip_with_numpy_and_unicode():
    buf = io.StringIO()
    events.emit(Step.of(3, epoch=1, step=np.int64(7), loss=np.float32(2.5), host="主机"), stream=buf)
    line = buf.getvalue()
    assert line.startswith(events.PREFIX)
    assert line.endswith("\n")
    assert line.count("\n") == 1
    record = events.parse_record(line.rstrip("\n"))
    assert record["event"] == "step"
    assert record["rank"] == 3
    assert record["v"] == events.VERSION
    assert record["step"] == 7
    assert record["loss"] == 2.5
    assert record["host"] == "主机"
    assert isinstance(record["time"], float)


def test_non_finite_values_stay_valid_json():
    line = events.format_event(EpochEnd.of(0, loss=float("nan"), other=[float("inf")]))
    json.loads(line[len(events.PREFIX):])
    assert events.parse_record(line)["loss"] == "nan"


@pytest.mark.parametrize("line", ["plain log text", "@wrn not json", "@wrn [1,2]",
                                  '@wrn {"event":"nonsense"}', '@wrn{"event":"step"}', ""])
def test_plain_or_broken_lines_are_not_events(line):
    assert events.parse_record(line) is None
    assert parse_event(line) is None


def test_unknown_event_name_rejected_on_write():
    with pytest.raises(ValueError, match="unknown event"):
        events.format_event(Event(rank=0))


def test_typed_reading_is_lenient_and_keeps_unknown_fields():
    step = parse_event('@wrn {"v":1,"event":"step","rank":1,"time":5.5,"epoch":"two","step":3,'
                       '"loss":true,"imgs_per_s":12.5,"mine":[1]}')
    assert step == Step(rank=1, time=5.5, epoch=None, step=3, loss=None, imgs_per_s=12.5)
    assert step.extra == {"mine": [1]}
    assert event_from({"event": "error", "rank": 0, "message": "boom", "kind": "ValueError"}) \
        == Error(rank=0, message="boom", error_kind="ValueError")
    assert event_from({"event": "nonsense", "rank": 0}) is None
    warning = WarningEvent.of(2, message="skipped", skipped_files=3)
    assert event_from(json.loads(events.format_event(warning)[len(events.PREFIX):])).extra == \
        {"skipped_files": 3}


def test_every_named_field_is_written_and_the_others_as_given():
    record = json.loads(events.format_event(Eval.of(0, epoch=1, top1=0.5, local_correct=4))
                        [len(events.PREFIX):])
    assert {k: v for k, v in record.items() if k != "time"} == {
        "v": 1, "event": "eval", "rank": 0, "epoch": 1, "top1": 0.5, "correct": None,
        "total": None, "loss": None, "local_correct": 4}
    error = json.loads(events.format_event(Error(rank=1, message="m", error_kind="K"))[len(events.PREFIX):])
    assert (error["message"], error["kind"]) == ("m", "K")
