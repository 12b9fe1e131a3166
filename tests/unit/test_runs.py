"""``wrn-launch runs`` and the run-directory reader (``launcher.rundir.reading``)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from launcher.commands import runs
from launcher.commands.common import output_console
from launcher.commands.runs import runs_table
from launcher.rundir.reading import RunDirError, find_runs, load_run, parse_time, pid_alive, read_events
from launcher.ui.formatting import fmt_loss, fmt_top1, fmt_when
from tests.support.processes import fake_env


def write_run(root: Path, name: str, status: str = "succeeded", start: str = "2026-01-02T10:00:00+00:00",
              events: list[dict] | None = None, **info) -> Path:
    run = root / name
    run.mkdir(parents=True)
    data = {"status": status, "start_time": start, "plan": {"world_size": 2, "hosts": ["h1"],
                                                             "device_target": "CPU"}}
    data.update(info)
    (run / "run.json").write_text(json.dumps(data))
    if events is not None:
        (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run


EVENTS = [
    {"event": "start", "rank": 0, "world_size": 2, "epochs": 2, "steps_per_epoch": 2, "model": "m"},
    {"event": "step", "rank": 0, "epoch": 1, "step": 2, "global_step": 2, "loss": 2.0},
    {"event": "step", "rank": 1, "epoch": 1, "step": 2, "global_step": 2, "loss": 2.2},
    {"event": "epoch_end", "rank": 0, "epoch": 1, "loss": 2.0, "seconds": 3.0, "imgs_per_s": 10.0},
    {"event": "epoch_end", "rank": 1, "epoch": 1, "loss": 2.4, "seconds": 3.5, "imgs_per_s": 9.0},
    {"event": "eval", "rank": 0, "epoch": 1, "top1": 0.4},
    {"event": "checkpoint", "rank": 0, "epoch": 1, "path": "c1"},
    # a restart repeats step 2 of epoch 1: the newer numbers win
    {"event": "step", "rank": 0, "epoch": 1, "step": 2, "global_step": 2, "loss": 1.5},
    {"event": "epoch_end", "rank": 0, "epoch": 1, "loss": 1.6, "seconds": 3.0, "imgs_per_s": 10.0},
]


def test_record_numbers_from_events(tmp_path):
    run = write_run(tmp_path, "a", events=EVENTS, wall_s=65.0)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"event": "step", "rank": 0, "glo')  # a half-written last line
    rec = load_run(run)
    assert rec.bad_lines == 1
    assert rec.name == "a"
    assert rec.world_size == 2
    assert rec.devices == "2 CPU"
    assert rec.step_losses() == [(2, 1.5)]
    rows = rec.epochs()
    assert len(rows) == 1
    assert rows[0].loss == pytest.approx(2.0)
    assert rows[0].seconds == 3.5
    assert rows[0].imgs_per_s == pytest.approx(19.0)
    assert rows[0].top1 == 0.4
    assert rows[0].checkpoint
    assert rec.final_loss == pytest.approx(2.0)
    assert rec.top1 == 0.4
    assert rec.duration_s == 65.0
    assert rec.accuracy() == [(1, 0.4)]
    assert rec.start_event.model == "m"


def test_summary_and_eval_json_take_precedence(tmp_path):
    run = write_run(tmp_path, "b", events=EVENTS, summary={"final_loss": 0.5, "top1": 0.9, "imgs_per_s": 99.0})
    assert (load_run(run).final_loss, load_run(run).top1, load_run(run).imgs_per_s) == (0.5, 0.9, 99.0)
    run2 = write_run(tmp_path, "c", events=EVENTS)
    (run2 / "eval.json").write_text(json.dumps({"top1": 0.77, "correct": 77, "total": 100}))
    assert load_run(run2).top1 == 0.77


def test_lost_run_is_detected(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lost = write_run(tmp_path, "lost", status="running", processes=[{"pid": dead.pid}], agents=[])
    alive = write_run(tmp_path, "alive", status="running", processes=[{"pid": os.getpid()}])
    assert load_run(lost).status == "lost"
    assert load_run(alive).status == "running"
    assert load_run(alive).duration_s > 0  # still running: time so far
    assert pid_alive(os.getpid())
    assert not pid_alive(dead.pid)
    assert not pid_alive(None)


def test_find_runs_sorts_by_start_and_skips_junk(tmp_path):
    write_run(tmp_path, "late", start="2026-01-03T00:00:00+00:00")
    write_run(tmp_path, "early", start="2026-01-01T00:00:00+00:00")
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{nope")
    (tmp_path / "file.txt").write_text("x")
    assert [r.name for r in find_runs(tmp_path)] == ["early", "late"]
    assert [r.name for r in find_runs(tmp_path / "late")] == ["late"]  # a run dir itself
    with pytest.raises(RunDirError, match="no such directory"):
        find_runs(tmp_path / "missing")


def test_load_run_errors(tmp_path):
    with pytest.raises(RunDirError, match="no such directory"):
        load_run(tmp_path / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="has no run.json"):
        load_run(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("[1]")
    with pytest.raises(RunDirError, match="JSON object"):
        load_run(tmp_path / "bad")


def test_runs_table_content(tmp_path):
    write_run(tmp_path, "wrn-sample-20260102-100000", events=EVENTS, wall_s=3725.0,
              summary={"final_loss": 0.3283, "top1": 0.9833})
    write_run(tmp_path, "crashed", status="failed", start="2026-01-03T10:00:00+00:00")
    console = Console(record=True, width=120, force_terminal=True)
    console.print(runs_table(find_runs(tmp_path)))
    text = console.export_text()
    for col in ("name", "status", "start", "duration", "devices", "final loss", "accuracy"):
        assert col in text
    first = next(line for line in text.splitlines() if "wrn-sample" in line)
    assert "succeeded" in first
    assert "1:02:05" in first
    assert "2 CPU" in first
    assert "0.3283" in first
    assert "98.33%" in first
    assert "failed" in next(line for line in text.splitlines() if "crashed" in line)


def test_runs_command(tmp_path, capsys):
    out = io.StringIO()
    assert runs.main([str(tmp_path)], stream=out) == 0
    assert "no runs in" in out.getvalue()
    write_run(tmp_path, "one", status="running", processes=[{"pid": 2 ** 22 + 7}])
    out = io.StringIO()
    assert runs.main([str(tmp_path)], stream=out) == 0
    assert "one" in out.getvalue()
    assert "lost" in out.getvalue()
    assert "launcher was killed" in out.getvalue()
    assert "\x1b" not in out.getvalue()
    assert runs.main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wrn-launch runs: error:")
    assert err.count("\n") == 1


def test_runs_through_the_cli_default_dir(tmp_path):
    write_run(tmp_path / "runs", "r1")
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", "runs"], cwd=tmp_path, env=fake_env(),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert "r1" in proc.stdout
    assert "succeeded" in proc.stdout


def test_helpers(tmp_path):
    assert parse_time("2026-01-01T00:00:00+00:00").year == 2026
    assert parse_time("x") is None
    assert parse_time(None) is None
    assert read_events(tmp_path / "missing.jsonl") == ([], 0)
    assert fmt_top1(0.5) == "50.00%"
    assert fmt_top1(None) == "-"
    assert fmt_loss(1.23456) == "1.235"
    assert fmt_when(None) == "-"


def test_output_console_plain_for_pipes():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    assert output_console(io.StringIO()).is_terminal is False
    assert output_console(io.StringIO()).width == 160
    assert output_console(Tty()).file.isatty()
