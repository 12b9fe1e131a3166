"""wrn-launch as a new user installs it: a wheel built from this tree, installed into a fresh
virtual environment outside the checkout, run from an unrelated directory with nothing of the
checkout on the path. Minutes: MindSpore is installed into the fresh environment (from pip's
cache when it has it) and the default 2-device job runs to its usual accuracy.

The tree is copied first (files git knows, plus untracked ones it does not ignore), so building
leaves nothing in the checkout; the sdist is built from the copy and the wheel from the sdist,
so both are shown to carry what the tool needs at run time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

import wrn
from tests.support import REPO
from tests.support.processes import fake_env, run_processes, wait_for

pytestmark = pytest.mark.slow

#: What the installed tool needs at run time besides its modules: the bundled configs, the
#: worker, scheduler and node-agent entry points, and the console script's module.
RUNTIME_FILES = ("wrn/configs/default.yaml", "wrn/configs/wrn50-2_config.yaml", "wrn/train.py",
                 "wrn/scheduler.py", "launcher/agent/node.py", "wrn_launch.py")


def _tree_files() -> list[str]:
    """The checkout's files as a clone would have them: tracked plus untracked-not-ignored."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, capture_output=True, check=True).stdout
    return sorted({name for name in out.decode().split("\0") if name and os.path.lexists(REPO / name)})


def _copy_tree(dest: Path) -> None:
    for name in _tree_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target, follow_symlinks=False)


def _checkout_paths() -> set[str]:
    """Every path in the checkout outside .git and .venv (to show the test adds none)."""
    found = set()
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not (root == str(REPO) and d in (".git", ".venv"))]
        found.update(os.path.relpath(os.path.join(root, n), REPO) for n in dirs + files)
    return found


def _clean_env() -> dict[str, str]:
    """A user's shell: no PYTHONPATH, no active virtual environment, no cluster variables."""
    env = fake_env()
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env


def _run(argv: list, cwd: Path, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run([str(a) for a in argv], cwd=cwd, env=env or _clean_env(), capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, f"{argv}: exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wrn-launch executable, the wheel, the sdist, an unrelated working directory, the source copy)."""
    before = _checkout_paths()
    root = tmp_path_factory.mktemp("wheel")
    src, dist, venv, elsewhere = root / "src", root / "dist", root / "venv", root / "elsewhere"
    elsewhere.mkdir()
    t0 = time.monotonic()
    _copy_tree(src)
    _run([sys.executable, "-m", "venv", venv], root, 120)
    python = venv / "bin" / "python"
    # the sdist with the fresh environment's setuptools, then the wheel from it as pip builds one
    _run([python, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"],
         src, 300)
    (sdist,) = dist.glob("*.tar.gz")
    _run([python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist, sdist], elsewhere, 300)
    (wheel,) = dist.glob("*.whl")
    t1 = time.monotonic()
    _run([python, "-m", "pip", "install", "--quiet", wheel], elsewhere, 900)
    t2 = time.monotonic()
    print(f"wheel: copy + venv + sdist + wheel {t1 - t0:.0f} s, pip install (with MindSpore) {t2 - t1:.0f} s")
    yield venv / "bin" / "wrn-launch", wheel, sdist, elsewhere, src
    assert _checkout_paths() - before == set(), "the wheel test left files in the checkout"


def test_wheel_and_sdist_carry_the_runtime_files(installed):
    _, wheel, sdist, _, _ = installed
    assert wheel.name == f"wrn_launch-{wrn.__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(RUNTIME_FILES) <= names
    assert not any(n.startswith(("tests/", "configs/", "benchmarks/")) for n in names)
    prefix = sdist.name[:-len(".tar.gz")]
    with tarfile.open(sdist) as tar:
        sdist_names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert set(RUNTIME_FILES) <= sdist_names, prefix
    meta = zipfile.ZipFile(wheel).read(f"wrn_launch-{wrn.__version__}.dist-info/entry_points.txt").decode()
    assert "wrn-launch = wrn_launch:main" in meta


def test_installed_commands_from_another_directory(installed):
    exe, _, _, elsewhere, _ = installed
    site = next((exe.parent.parent / "lib").glob("python3.*/site-packages"))
    version = _run([exe, "--version"], elsewhere, 60).stdout
    assert version.startswith(f"wrn-launch {wrn.__version__} from {site.resolve()} (installed; python ")
    listed = _run([exe, "config", "list"], elsewhere, 60).stdout.splitlines()
    assert [line.split()[0] for line in listed] == ["default", "wrn50-2_config"]
    shown = subprocess.run([exe, "config", "show", "default"], cwd=elsewhere, env=_clean_env(),
                           capture_output=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == (REPO / "configs" / "default.yaml").read_bytes()
    model = _run([exe, "model", "wrn50_2", "--num-classes", "2388"], elsewhere, 300).stdout
    assert "71,727,252" in model
    plan = _run([exe, "--devices", "2", "--dry-run"], elsewhere, 300).stdout
    assert f"{site.resolve()}/wrn/configs/default.yaml" in plan
    assert "PYTHONPATH" not in plan  # installed: the workers need no path of ours
    assert [p.name for p in elsewhere.iterdir()] == []  # a dry run creates nothing


def test_installed_preflight_over_ssh(installed, sshd):
    """Two hosts over real SSH: one imports the wrn-launch installed for its python, the other
    a source folder given as workdir=; the pre-flight table says which."""
    exe, _, _, elsewhere, src = installed
    hosts = elsewhere.parent / "hosts.txt"
    hosts.write_text(f"127.0.0.1 slots=1\n127.0.0.2 slots=1 workdir={src}\n")
    res = _run([exe, "--hostfile", hosts, "--ssh-config", sshd.ssh_config, "--ssh-timeout", "10",
                "--backend", "cpu", "--dry-run"], elsewhere, 120)
    assert "pre-flight" in res.stderr
    assert "FAILED" not in res.stderr
    assert f"{wrn.__version__} installed" in res.stderr
    assert f"{wrn.__version__} workdir" in res.stderr
    assert f"PYTHONPATH={src}" in res.stdout  # the second host's processes only


def test_installed_default_job_two_devices(installed):
    """The default job (what `make demo` runs), here from the installed wheel, cut to 2 of its
    10 epochs: what a default run leaves behind. The default's accuracy over all 10 epochs is
    checked by the 2-host runs (tests/e2e/test_ssh_e2e.py, tests/e2e/test_slurm.py)."""
    exe, _, _, elsewhere, _ = installed
    run_dir = elsewhere / "run"
    t0 = time.monotonic()
    res = _run([exe, "--devices", "2", "--run-dir", run_dir, "--plain", "--set", "epoch_size=2"],
               elsewhere, 900)
    record = json.loads((run_dir / "run.json").read_text())
    top1 = json.loads((run_dir / "eval.json").read_text())["top1"]
    print(f"default 2-device job (2 epochs) from the installed wheel: {time.monotonic() - t0:.0f} s, "
          f"top-1 {top1:.4f}")
    assert record["status"] == "succeeded"
    assert record["versions"]["wrn-launch"] == wrn.__version__
    assert record["summary"]["top1"] == pytest.approx(top1) and top1 > 0.1  # better than chance
    assert "replicas in sync" in res.stdout
    assert "\x1b" not in res.stdout
    assert all(p["exit_code"] == 0 for p in record["processes"])  # scheduler included
    assert list((run_dir / "checkpoints").glob("*.ckpt"))
    assert (run_dir / "classes.json").exists()
    assert (run_dir / "logs" / "scheduler.log").exists()
    finishes = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    finishes = [e for e in finishes if e["event"] == "finish"]
    assert len(finishes) == 2
    assert finishes[0]["checksum"] == finishes[1]["checksum"]
    assert wait_for(lambda: not run_processes(run_dir), 5)
