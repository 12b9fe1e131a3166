"""The event line format: written and parsed in wrn/events.py only."""

import io
import json

import numpy as np
import pytest

from wrn import events


def test_round_trip_with_numpy_and_unicode():
    buf = io.StringIO()
    events.emit("step", 3, stream=buf, epoch=1, step=np.int64(7), loss=np.float32(2.5), host="主机")
    line = buf.getvalue()
    assert line.startswith(events.PREFIX)
    assert line.endswith("\n")
    assert line.count("\n") == 1
    record = events.parse(line.rstrip("\n"))
    assert record["event"] == "step"
    assert record["rank"] == 3
    assert record["v"] == events.VERSION
    assert record["step"] == 7
    assert record["loss"] == 2.5
    assert record["host"] == "主机"
    assert isinstance(record["time"], float)


def test_non_finite_values_stay_valid_json():
    line = events.format_event("epoch_end", 0, loss=float("nan"), other=[float("inf")])
    json.loads(line[len(events.PREFIX):])
    assert events.parse(line)["loss"] == "nan"


@pytest.mark.parametrize("line", ["plain log text", "@wrn not json", "@wrn [1,2]",
                                  '@wrn {"event":"nonsense"}', '@wrn{"event":"step"}', ""])
def test_plain_or_broken_lines_are_not_events(line):
    assert events.parse(line) is None


def test_unknown_event_name_rejected_on_write():
    with pytest.raises(ValueError, match="unknown event"):
        events.format_event("stepp", 0)
