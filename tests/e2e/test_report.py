"""``wrn-launch report`` on a run the launcher really made (fake workers): the command writes
a valid plot, and the report without one. The report from recorded event streams is in
unit/test_report.py."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from launcher.commands import report
from tests.support.launches import launcher_argv
from tests.support.processes import fake_env

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A run the launcher made with fake workers (2 ranks, 2 epochs)."""
    root = tmp_path_factory.mktemp("finished")
    argv = launcher_argv("--devices", "2", "--run-dir", str(root / "run"), "--grace", "1")
    proc = subprocess.run(argv, env=fake_env(steps=4, epochs=2, step_s=0.02), cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return root / "run"


def test_report_command_on_a_finished_run_writes_a_valid_plot(finished_run):
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", "report", str(finished_run)],
                          capture_output=True, text=True, timeout=60, env=fake_env())
    assert proc.returncode == 0, proc.stderr
    plot = finished_run / "report.svg"
    assert plot.is_file()
    assert f"plot: {plot}" in proc.stdout
    root = ET.parse(plot).getroot()
    assert root.tag == f"{SVG}svg"
    assert root.findall(f".//{SVG}polyline")
    assert "\x1b" not in proc.stdout
    assert "succeeded" in proc.stdout
    assert "95.00%" in proc.stdout
    assert re.search(r"^\s+2\s+0\.25\s", proc.stdout, re.M)  # epoch 2's loss (2 / global step 8)


def test_report_no_plot(finished_run, tmp_path, capsys):
    target = tmp_path / "elsewhere.svg"
    assert report.main([str(finished_run), "--plot", str(target)]) == 0
    assert target.is_file()
    assert str(target) in capsys.readouterr().out
    assert report.main([str(finished_run), "--no-plot"]) == 0
    assert "plot:" not in capsys.readouterr().out
