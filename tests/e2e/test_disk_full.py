"""A full disk under the run directory: the launcher keeps supervising, warns once, and records
the final state once there is room again (a real 512 KiB tmpfs, fake workers)."""

from __future__ import annotations

import json
import os
import shutil
import threading

from tests.support.launches import Run
from tests.support.processes import wait_for


def _fill(disk, leave: int) -> None:
    """Take all of ``disk``'s free space but ``leave`` bytes."""
    room = shutil.disk_usage(disk).free - leave
    with open(disk / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, room))


def test_a_full_disk_does_not_stop_the_run_and_is_reported_once(small_disk):
    _fill(small_disk, leave=48 * 1024)  # room for the run dir, not for the workers' output
    run = Run(small_disk, "--plain", steps=100, step_s=0.03, plain=20)

    def free_space_later():  # the user frees space once the disk has been full for a while
        if wait_for(lambda: shutil.disk_usage(small_disk).free < 8 * 1024, 30):
            threading.Event().wait(0.7)
        (small_disk / "filler").unlink()
    helper = threading.Thread(target=free_space_later)
    helper.start()
    code = run.wait(60)
    helper.join()

    assert code == 0, run.err[-2000:]
    assert "Traceback" not in run.err + run.out
    warnings = [line for line in (run.out + run.err).splitlines() if "cannot write" in line]
    assert len(warnings) == 1, warnings
    assert "No space left on device" in warnings[0] and "free there" in warnings[0]
    assert str(run.dir) in warnings[0]
    record = run.record
    assert record["status"] == "succeeded" and record["exit_code"] == 0
    assert all(p["exit_code"] == 0 for p in record["processes"])
    assert not [p for p in run.dir.rglob("*") if p.name.endswith(".tmp")]
    for line in (run.dir / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # every line whole: nothing glued onto a torn line


def test_the_writers_drop_what_they_cannot_write(tmp_path):
    """Unit view of the same: a write error is noted, warned once, never raised."""
    from launcher.rundir.files import RunFiles
    from launcher.rundir.record import RunRecord, RunRecordWriter

    files = RunFiles(tmp_path)
    writer = RunRecordWriter(tmp_path, trouble=files.trouble)
    assert writer.write(RunRecord(status="running"))
    os.chmod(tmp_path, 0o500)  # read-only folder: creating files fails like a full disk would
    try:
        if os.access(tmp_path / "x", os.W_OK) or os.geteuid() == 0:
            files.trouble.failed(tmp_path / "run.json", OSError(28, "No space left on device"))
        else:
            assert not writer.write(RunRecord(status="succeeded"))
            files.log("logs/new-rank0.log", "a line")
    finally:
        os.chmod(tmp_path, 0o700)
    warning = files.trouble.take_warning()
    assert warning is not None and "free there" in warning
    assert files.trouble.take_warning() is None  # once
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "running"
    files.close()
