"""The ModelZoo-style shell wrappers in scripts/: argument checking, path resolution, Python
discovery, DEVICE_TARGET, exit codes (against a fake Python that records its command line),
and, marked slow, real CPU runs of all three on a tiny generated dataset."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import REPO
from tests.support.processes import fake_env

SCRIPTS = REPO / "scripts"
DISTRIBUTE, STANDALONE, EVAL = "run_distribute_train.sh", "run_standalone_train.sh", "run_eval.sh"


def run_script(name: str, *args: str, cwd: Path, env: dict | None = None, scripts: Path = SCRIPTS,
               timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(scripts / name), *args], cwd=cwd, env=env or fake_env(),
                          capture_output=True, text=True, timeout=timeout)


def fake_python(path: Path) -> Path:
    """An executable that records its argv, cwd and PYTHONPATH as JSON and exits $FAKE_RC."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    "open(os.environ['ARGV_OUT'], 'w').write(json.dumps({'argv': sys.argv, "
                    "'cwd': os.getcwd(), 'pythonpath': os.environ.get('PYTHONPATH', ''), "
                    "'device_id': os.environ.get('DEVICE_ID')}))\n"
                    "sys.exit(int(os.environ.get('FAKE_RC', '0')))\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def recorder(tmp_path):
    """(env with PYTHON = a fake python, function returning what it recorded)."""
    out = tmp_path / "argv.json"
    env = fake_env()
    env.update({"PYTHON": str(fake_python(tmp_path / "bin" / "fakepy")), "ARGV_OUT": str(out)})
    return env, lambda: json.loads(out.read_text())


@pytest.mark.parametrize("name, args", [
    (DISTRIBUTE, []), (DISTRIBUTE, ["t.json", "data"]), (DISTRIBUTE, ["a", "b", "c", "d", "e"]),
    (STANDALONE, ["data"]), (STANDALONE, ["a", "b", "c", "d"]),
    (EVAL, ["data", "x.ckpt"]), (EVAL, ["a", "b", "c", "d"]),
])
def test_usage_on_wrong_argument_count(tmp_path, recorder, name, args):
    env, _ = recorder
    res = run_script(name, *args, cwd=tmp_path, env=env)
    assert res.returncode == 2
    assert res.stderr.startswith(f"usage: bash {SCRIPTS / name} ")
    assert "DEVICE_TARGET" in res.stderr
    assert not (tmp_path / "argv.json").exists()


def test_distribute_command_line(tmp_path, recorder):
    env, recorded = recorder
    (tmp_path / "sub").mkdir()
    res = run_script(DISTRIBUTE, "t.json", "../data", "./cfg.yaml", "ck/x.ckpt", cwd=tmp_path / "sub",
                     env=env | {"DEVICE_TARGET": "CPU", "WRN_LAUNCH_ARGS": "--plain --name exp"})
    assert res.returncode == 0, res.stderr
    rec = recorded()
    sub = tmp_path / "sub"
    assert rec["argv"][1:] == [
        "-m", "launcher.cli", "--rank-table", f"{sub}/t.json", "--backend", "cpu",
        "--config", f"{sub}/cfg.yaml", "--set", f"data_path={sub}/../data", "--set", "device_target=CPU",
        "--resume-ckpt", f"{sub}/ck/x.ckpt", "--plain", "--name", "exp"]
    assert rec["cwd"] == str(sub)
    assert rec["pythonpath"].split(os.pathsep)[0] == str(REPO)
    # default target Ascend; absolute and builtin: paths are kept
    run_script(DISTRIBUTE, "/t.json", "builtin:rp2k-sample", "/c.yaml", cwd=tmp_path, env=env)
    argv = recorded()["argv"]
    assert argv[3:10] == ["--rank-table", "/t.json", "--backend", "ascend", "--config", "/c.yaml", "--set"]
    assert "data_path=builtin:rp2k-sample" in argv
    assert "device_target=Ascend" in argv
    assert argv[-2:] == ["--ascend-startup", "ranktable"]  # the ModelZoo scripts' startup
    assert "--resume-ckpt" not in argv
    run_script(DISTRIBUTE, "/t.json", "d", "/c.yaml", cwd=tmp_path,
               env=env | {"ASCEND_STARTUP": "dynamic"})
    assert recorded()["argv"][-2:] == ["--ascend-startup", "dynamic"]


def test_standalone_and_eval_command_lines(tmp_path, recorder):
    env, recorded = recorder
    res = run_script(STANDALONE, "data", "c.yaml", "r.ckpt", cwd=tmp_path,
                     env=env | {"DEVICE_TARGET": "GPU", "DEVICE_ID": "3"})
    assert res.returncode == 0, res.stderr
    assert recorded()["argv"][1:] == [
        "-m", "launcher.cli", "--devices", "3,", "--backend", "gpu", "--config", f"{tmp_path}/c.yaml",
        "--set", f"data_path={tmp_path}/data", "--set", "device_target=GPU",
        "--resume-ckpt", f"{tmp_path}/r.ckpt"]
    res = run_script(EVAL, "data", "run/checkpoints/a.ckpt", "run/config.yaml", cwd=tmp_path,
                     env=env | {"DEVICE_TARGET": "CPU"})
    assert res.returncode == 0, res.stderr
    rec = recorded()
    assert rec["argv"][1:] == ["-m", "launcher.cli", "eval", f"{tmp_path}/run/checkpoints/a.ckpt",
                               "--config", f"{tmp_path}/run/config.yaml", "--devices", "0,", "--backend",
                               "cpu", "--set", f"data_path={tmp_path}/data", "--set", "device_target=CPU"]
    assert rec["device_id"] is None  # the device is --devices 0, (the launcher sets DEVICE_ID)


@pytest.mark.parametrize("name, nargs", [(DISTRIBUTE, 3), (STANDALONE, 2), (EVAL, 3)])
def test_exit_code_passed_through(tmp_path, recorder, name, nargs):
    env, _ = recorder
    res = run_script(name, *["x"] * nargs, cwd=tmp_path, env=env | {"FAKE_RC": "7", "DEVICE_TARGET": "CPU"})
    assert res.returncode == 7


def test_bad_device_target(tmp_path, recorder):
    env, _ = recorder
    res = run_script(EVAL, "a", "b", "c", cwd=tmp_path, env=env | {"DEVICE_TARGET": "TPU"})
    assert res.returncode == 2
    assert "DEVICE_TARGET=TPU is not one of Ascend, GPU, CPU" in res.stderr


def test_python_discovery_order(tmp_path):
    """$PYTHON, else the repository's .venv/bin/python, else python3 from PATH."""
    repo = tmp_path / "repo"
    shutil.copytree(SCRIPTS, repo / "scripts")
    out = tmp_path / "argv.json"
    bin_dir = tmp_path / "bin"
    fake_python(bin_dir / "python3")
    env = fake_env()
    env.update({"ARGV_OUT": str(out), "PATH": f"{bin_dir}:/usr/bin:/bin", "DEVICE_TARGET": "CPU"})
    env.pop("PYTHON", None)

    def used() -> str:
        res = run_script(EVAL, "a", "b", "c", cwd=tmp_path, env=env, scripts=repo / "scripts")
        assert res.returncode == 0, res.stderr
        return json.loads(out.read_text())["argv"][0]

    assert used() == str(bin_dir / "python3")
    venv_python = fake_python(repo / ".venv" / "bin" / "python")
    assert used() == str(venv_python)
    env["PYTHON"] = str(fake_python(tmp_path / "mine" / "py"))
    assert used() == env["PYTHON"]


# -- real runs on CPU -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 4-class dataset (64 train / 16 test images, one corrupt), a 1-epoch config, a 2-device
    rank table for this host."""
    root = tmp_path_factory.mktemp("tiny")
    subprocess.run([sys.executable, "-m", "wrn.synth", str(root / "data"), "--classes", "4",
                    "--train-per-class", "16", "--test-per-class", "4"], check=True, cwd=REPO,
                   env=fake_env(), capture_output=True)
    cfg = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    cfg.update({"num_classes": 4, "epoch_size": 1, "batch_size": 8, "warmup_epochs": 0,
                "save_checkpoint_epochs": 1, "log_interval": 2, "num_parallel_workers": 1})
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    table = {"version": "1.0", "server_count": "1", "status": "completed", "server_list": [
        {"server_id": "127.0.0.1", "host_nic_ip": "reserve", "device": [
            {"device_id": str(d), "device_ip": f"192.168.0.{10 + d}", "rank_id": str(d)} for d in (0, 1)]}]}
    (root / "hccl_2p.json").write_text(json.dumps(table, indent=4))
    return root


@pytest.mark.slow
def test_distribute_on_cpu_trains_evaluates_and_leaves_a_run_dir(tiny, tmp_path):
    env = fake_env() | {"DEVICE_TARGET": "CPU", "WRN_LAUNCH_ARGS": "--run-dir run --plain"}
    res = run_script(DISTRIBUTE, str(tiny / "hccl_2p.json"), str(tiny / "data"), str(tiny / "tiny.yaml"),
                     cwd=tmp_path, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run = tmp_path / "run"
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["plan"]["world_size"] == 2
    assert all(p["exit_code"] == 0 for p in record["processes"])
    assert [p["env"]["RANK_SIZE"] for p in record["plan"]["processes"] if p["role"] == "worker"] == ["2", "2"]
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["total"] == 16
    assert evaluation["world_size"] == 2
    ckpts = sorted((run / "checkpoints").glob("*.ckpt"))
    assert ckpts
    assert (run / "checkpoints" / "latest.json").exists()
    for name in ("config.yaml", "classes.json", "metrics.jsonl", "rank_table.json", "logs/scheduler.log"):
        assert (run / name).exists(), name
    assert sorted(p.name for p in (run / "logs").glob("*-rank*.log")) == [
        f"{record['plan']['ranks'][0]['host']}-rank{k}.log" for k in (0, 1)]
    assert json.loads((run / "rank_table.json").read_text()) == json.loads((tiny / "hccl_2p.json").read_text())
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["rank"] for e in events if e["event"] == "finish"] in ([0, 1], [1, 0])

    # evaluate the checkpoint the run left, from the run directory, with relative paths
    res = run_script(EVAL, str(tiny / "data"), f"run/checkpoints/{ckpts[-1].name}", "run/config.yaml",
                     cwd=tmp_path, env=fake_env() | {"DEVICE_TARGET": "CPU"}, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    evaluation = json.loads(next((tmp_path / "run" / "eval").glob("*/eval.json")).read_text())
    assert evaluation["total"] == 16 and evaluation["world_size"] == 1
    assert f"({evaluation['correct']}/16)" in res.stdout  # the console's evaluation table


@pytest.mark.slow
def test_standalone_on_cpu(tiny, tmp_path):
    env = fake_env() | {"DEVICE_TARGET": "CPU", "WRN_LAUNCH_ARGS": "--run-dir run --plain"}
    res = run_script(STANDALONE, str(tiny / "data"), str(tiny / "tiny.yaml"), cwd=tmp_path, env=env,
                     timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["plan"]["world_size"] == 1
    assert record["plan"]["scheduler"] is None  # one worker: standalone, no cluster
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["world_size"] == 1
