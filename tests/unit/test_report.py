"""``wrn-launch report``: the terminal report at fixed widths from recorded event streams of 2,
8 and 64 ranks, the SVG plot (parsed back as XML), the text charts. The command on a run the
launcher really made (fake workers) is in e2e/test_report.py."""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from launcher.commands import report
from launcher.commands.report import nice_ticks, report_renderables, sparkline, svg_document, text_chart, write_svg
from launcher.rundir.reading import load_run
from tests.support import EVENTS

SVG = "{http://www.w3.org/2000/svg}"
STREAMS = {"real2": (2, 10), "ranks8": (8, 3), "ranks64": (64, 3)}  # ranks, epochs


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def make_run_dir(root: Path, stream: str, status: str = "succeeded", **extra) -> Path:
    """A run directory holding ``stream``'s events, as the launcher would have left it."""
    lines = (EVENTS / f"{stream}.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    starts = {r["rank"]: r for r in records if r["event"] == "start"}
    hosts = list(dict.fromkeys(starts[r]["host"] for r in sorted(starts)))
    run = root / f"{stream}-run"
    (run / "logs").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    t0, t1 = records[0]["time"] - 5, records[-1]["time"] + 1
    info = {"format": 1, "status": status, "start_time": iso(t0), "end_time": iso(t1), "wall_s": t1 - t0,
            "backend": "gpu", "exit_code": 0 if status == "succeeded" else 1,
            "plan": {"world_size": len(starts), "hosts": hosts, "device_target": "GPU"},
            "processes": [{"name": f"rank{r}", "rank": r, "host": starts[r]["host"], "pid": None,
                           "log": f"logs/{starts[r]['host']}-rank{r}.log"} for r in sorted(starts)],
            "root_cause": None}
    info.update(extra)
    (run / "run.json").write_text(json.dumps(info))
    return run


def render(items, width: int) -> str:
    console = Console(record=True, width=width, force_terminal=True)
    for item in items:
        console.print(item)
    return console.export_text()


@pytest.mark.parametrize("width", (80, 120, 200))
@pytest.mark.parametrize("stream", list(STREAMS))
def test_report_at_every_width(tmp_path, stream, width):
    ranks, epochs = STREAMS[stream]
    record = load_run(make_run_dir(tmp_path, stream))
    text = render(report_renderables(record, width, plot="RUN/report.svg"), width)
    assert all(len(line) <= width for line in text.splitlines())
    assert f"wrn-launch report · {stream}-run" in text
    for key in ("status", "started", "duration", "devices", "model", "final loss", "accuracy (top-1)",
                "throughput", "skipped images"):
        assert key in text, key
    assert f"{ranks} GPU" in text
    assert "succeeded" in text
    assert re.search(rf"epochs\s+{epochs}/{epochs}", text)
    # one row per epoch, then the two curves, then the plot file
    assert len(re.findall(r"^\s+\d+\s+\d\.\d+\s+\d", text, re.M)) >= epochs
    assert "training loss per logged step" in text
    assert "top-1 accuracy per evaluated epoch" in text
    assert "•" in text
    assert "global step" in text
    assert "plot: RUN/report.svg" in text


def test_report_numbers_of_the_real_two_rank_run(tmp_path):
    record = load_run(make_run_dir(tmp_path, "real2"))
    text = render(report_renderables(record, 120), 120)
    assert "wrn10_2 (303,706 parameters)" in text
    assert "32 per device x 2 = 64" in text
    assert re.search(r"final loss\s+0\.3048", text)  # mean of the two ranks' last epoch
    assert "98.33%" in text
    assert "e4 65.7%, e8 97.7%, e10 98.3%" in text
    epoch4 = next(line for line in text.splitlines() if re.match(r"\s+4\s+1\.22\s", line))
    assert "65.67%" in epoch4
    assert "✓" in epoch4
    assert [e for e, _ in record.accuracy()] == [4, 8, 10]
    assert len(record.step_losses()) == 20


def test_report_of_a_failed_run_names_the_root_cause(tmp_path):
    cause = {"name": "rank1", "host": "node1", "rank": 1, "reason": "exited with code 3",
             "error": "RuntimeError: fake failure", "log": "logs/node1-rank1.log"}
    record = load_run(make_run_dir(tmp_path, "ranks8", status="failed", root_cause=cause))
    text = render(report_renderables(record, 120), 120)
    assert "failed (exit code 1)" in text
    assert "rank 1 on node1 exited with code 3: RuntimeError: fake failure" in text


def test_svg_plot_is_valid_and_holds_the_curves(tmp_path):
    record = load_run(make_run_dir(tmp_path, "real2"))
    path = write_svg(record, tmp_path / "plot.svg")
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    assert root.get("width") == "900"
    assert len(root.findall(f"{SVG}g[@class='chart']")) == 2
    lines = {p.get("data-label"): p.get("points") for p in root.iter(f"{SVG}polyline")}
    assert len(lines["loss per logged step (rank 0)"].split()) == 20
    assert len(lines["epoch mean (all ranks)"].split()) == 10
    assert len(lines["top-1 after epoch"].split()) == 3
    for points in lines.values():
        for pair in points.split():
            x, y = map(float, pair.split(","))
            assert 0 <= x <= 900
            assert 0 <= y <= 660
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "training loss" in texts
    assert "top-1 accuracy" in texts
    assert "98.33%" in texts
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_svg_of_a_run_without_events_is_still_an_image(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "failed", "plan": {"world_size": 2}}))
    root = ET.fromstring(svg_document(load_run(run)))
    assert "no data" in " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    text = render(report_renderables(load_run(run), 80), 80)
    assert "no step or evaluation events" in text


def test_text_chart_and_sparkline():
    lines = text_chart([(0, 1.0), (5, 0.5), (10, 0.0)], width=11, height=5)
    assert lines[0].lstrip().startswith("1 ┤•")
    assert lines[4].rstrip().endswith("•")
    assert lines[-1].strip() == "0" + " " * 9 + "10" or lines[-1].split() == ["0", "10"]
    assert all("·" in line or "•" in line for line in lines[:5])  # a continuous line
    assert text_chart([]) == ["(no data)"]
    assert len(text_chart([(1, 2.0)], width=10, height=3)) == 5  # a flat single point still draws
    assert sparkline([3, 2, 1]) == "█▅▁"
    assert sparkline([]) == ""
    assert len(sparkline(list(range(100)), width=10)) == 10


def test_nice_ticks():
    assert nice_ticks(0, 180, 6) == [0, 50, 100, 150, 200]
    assert nice_ticks(60, 100, 5) == [60, 70, 80, 90, 100]
    assert nice_ticks(0.249, 2.32, 5)[0] == 0
    assert nice_ticks(1, 1)[0] <= 1 <= nice_ticks(1, 1)[-1]


def test_report_errors_are_one_paragraph(tmp_path, capsys):
    assert report.main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wrn-launch report: error:")
    assert "Traceback" not in err
    assert err.count("\n") == 1
    (tmp_path / "notarun").mkdir()
    assert report.main([str(tmp_path / "notarun")]) == 2
    assert "has no run.json" in capsys.readouterr().err
    run = make_run_dir(tmp_path, "ranks8")
    assert report.main([str(run), "--plot", str(tmp_path / "no" / "such" / "dir" / "p.svg")]) == 2
    assert "--no-plot" in capsys.readouterr().err
