"""From a downloaded-style archive to a trained run: ``wrn-launch data prepare`` on a zip with
CP936 (GBK) names and no UTF-8 flag, then a real 2-worker CPU run on the result, which writes
classes.json with the Chinese names; the data is scanned by one rank and loaded by the other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import fake_env
from tests.unit.test_dataprep import CLASSES, make_zip
from wrn import synth

pytestmark = pytest.mark.slow


def test_prepare_a_cp936_zip_then_train_on_it(tmp_path):
    gen = tmp_path / "gen"
    synth.generate(gen, num_classes=3, train_per_class=16, test_per_class=4)
    images = {split: sorted((p.relative_to(gen / split).as_posix(), p.read_bytes())
                            for p in (gen / split).glob("*/*") if "corrupt" not in p.name)
              for split in ("train", "test")}
    archive = make_zip(tmp_path / "rp2k_dataset.zip", images, encoding="gbk", flag=False)
    cli = [sys.executable, "-m", "launcher.cli"]
    prep = subprocess.run([*cli, "data", "prepare", str(archive), str(tmp_path / "data")], cwd=tmp_path,
                          env=fake_env(), capture_output=True, text=True, timeout=300)
    assert prep.returncode == 0, prep.stderr
    data_path = Path(prep.stdout.split("data_path: ")[1].split("\n")[0])
    assert data_path == (tmp_path / "data" / "all").resolve()
    assert "read as gbk" in prep.stderr

    run_dir = tmp_path / "run"
    run = subprocess.run([*cli, "--devices", "2", "--backend", "cpu", "--run-dir", str(run_dir), "--plain",
                          "--set", f"data_path={data_path}", "--set", "num_classes=3", "--set", "epoch_size=1",
                          "--set", "batch_size=8", "--set", "eval_interval=1"],
                         cwd=tmp_path, env=fake_env(), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads((run_dir / "classes.json").read_text("utf-8")) == sorted(CLASSES)
    logs = "".join(p.read_text() for p in (run_dir / "logs").glob("*.log"))
    assert logs.count("data: scanned") == 1
    assert logs.count("data: waited for") + logs.count("data: reused") == 1
    assert len(list((run_dir / "data-index").glob("*.idx"))) == 1
