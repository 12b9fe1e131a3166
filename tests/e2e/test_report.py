"""``wrn-launch report`` on a run the launcher really made (fake workers): the command writes
a valid plot, and the report without one; the launch records its host's machine and
``--modelzoo`` makes the ModelZoo tables of the run. The report from recorded event streams is
in unit/test_report.py, the tables' fields in unit/test_modelzoo.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from launcher.commands import report
from tests.support.launches import launcher_argv
from tests.support.processes import fake_env
from wrn.hostname import host_name

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


def test_modelzoo_tables_of_a_launched_run(finished_run):
    """The launch recorded its host's machine in run.json, and ``report --modelzoo`` turns the
    run into both ModelZoo tables."""
    record = json.loads((finished_run / "run.json").read_text())
    here = record["machines"][host_name()]
    assert here["cores"] and here["usable_cores"] == 2 and here["memory_gib"] > 0
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", "report", str(finished_run), "--modelzoo",
                           "--lang", "zh"], capture_output=True, text=True, timeout=60, env=fake_env())
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("### 训练性能\n")
    cpu = here["cpu"] or "型号未知（/proc/cpuinfo 未给出）"
    assert f"| 资源 | 2 × CPU（1台主机：{host_name()}）；CPU {cpu}，{here['cores']}核；" in out
    assert "| 微调检查点 | 4B（.ckpt文件） |" in out  # the fake worker's checkpoints hold "fake"
    assert "| 准确率 | 2卡：top-1 95.00% |" in out  # its eval.json has only top1
    assert "| 速度 | 2卡：" in out and "毫秒/步 |" in out
