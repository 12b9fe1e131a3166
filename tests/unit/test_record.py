"""run.json as a typed value: round trips, lenient reading, the writer's text and interval."""

from __future__ import annotations

import json
import time

from launcher.rundir.record import AttemptRecord, ProcessRecord, RunRecord, RunRecordWriter, record_json


def _record() -> RunRecord:
    return RunRecord(command=["wrn-launch", "--devices", "2"], plan={"world_size": 2},
                     processes=[ProcessRecord("rank0", "worker", "h", 0, pid=11, pgid=11),
                                ProcessRecord("scheduler", "scheduler", "h", None)],
                     attempts=[AttemptRecord(1, "restarted", "logs/attempt-1",
                                             restart_reason="rank 1 on h: killed by SIGKILL")],
                     attempt=2, status="succeeded", exit_code=0, wall_s=3.5)


def test_round_trip_through_the_written_text():
    record = _record()
    text = record_json(record, {})
    back = RunRecord.from_dict(json.loads(text))
    assert back.to_dict() == record.to_dict()
    assert text.count("\n") > 20  # one key (and one process) per line, not one long line


def test_wrong_types_read_as_missing():
    back = RunRecord.from_dict({"status": 3, "processes": [{"pid": "12", "rank": True}, "junk"],
                                "attempts": "x", "wall_s": "1", "start_time": 5, "plan": []})
    assert back.status == "unknown"
    assert [(p.pid, p.rank) for p in back.processes] == [(None, None)]
    assert back.attempts == []
    assert back.wall_s is None
    assert back.start_time is None
    assert back.plan == {}


def test_next_attempt_keeps_the_one_before():
    record = _record()
    nxt = record.next_attempt("restarted", "why")
    assert nxt.attempt == 3
    assert nxt.attempts[-1].restart_reason == "why"
    assert nxt.attempts[-1].exit_code == 0
    assert nxt.processes == []
    assert nxt.status == "running"


def test_the_writer_keeps_to_its_interval(tmp_path):
    writer = RunRecordWriter(tmp_path, processes=400)  # 0.2 s
    assert writer.interval == 0.2
    assert RunRecordWriter(tmp_path, processes=4000).interval == 0.5
    assert writer.due()
    writer.write(_record())
    assert not writer.due()
    time.sleep(0.25)
    assert writer.due()
    assert json.loads((tmp_path / "run.json").read_text())["attempt"] == 2
    assert not list(tmp_path.glob(".*tmp"))


def test_shrinks_round_trip_and_summary_lines():
    """A restart that left a host out (--min-devices) is kept in run.json and read back; the
    summary names the host, the attempt, why, and the world sizes."""
    from launcher.rundir.record import RunRecord
    from launcher.supervise.result import RunSummary
    from launcher.ui.summaryview import summary_rows

    shrink = {"attempt": 2, "dropped": [{"host": "b", "devices": 2, "reason": "unreachable"}],
              "world_size_before": 4, "world_size_after": 2}
    record = RunRecord(shrinks=[shrink])
    again = RunRecord.from_dict(record.to_dict())
    assert again.shrinks == [shrink]
    assert again.next_attempt("restarted").shrinks == [shrink]
    line = "b (2 device(s)) before attempt 2: unreachable; world size 4 -> 2"
    assert again.dropped_hosts() == [line]
    assert "shrinks" not in RunRecord().to_dict()
    standby = {"attempt": 2, "state": "used", "start_time": "t", "ready_s": 8.5}
    assert RunRecord.from_dict(RunRecord(standbys=[standby]).to_dict()).standbys == [standby]
    assert "standbys" not in RunRecord().to_dict()
    assert RunRecord.from_dict({"shrinks": ["x", 3, shrink]}).shrinks == [shrink]
    rows = dict(summary_rows(RunSummary("succeeded", 0, "/r", 1.0, hosts_dropped=[line])))
    assert rows["hosts left out"] == line
    assert "hosts left out" not in dict(summary_rows(RunSummary("succeeded", 0, "/r", 1.0)))
