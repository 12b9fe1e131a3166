"""What an installation carries and how it introduces itself: the bundled configs (``config
list`` / ``config show``), ``--version``, and the start-up check of the import names. The
command runs as installed (``python -m wrn_launch``, the console script's module) in a
subprocess; the wheel itself is built and installed in test_wheel.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import wrn
from tests.support import REPO
from tests.support.processes import fake_env
from wrn.config import bundled_configs


def wrn_launch(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wrn_launch", *args], cwd=cwd,
                          env=env or fake_env(), capture_output=True, timeout=60)


def test_config_show_default_is_the_repository_file_byte_for_byte(tmp_path):
    res = wrn_launch("config", "show", "default", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == (REPO / "configs" / "default.yaml").read_bytes()


def test_config_show_takes_the_file_name_too(tmp_path):
    res = wrn_launch("config", "show", "wrn50-2_config.yaml", cwd=tmp_path)
    assert res.stdout == (REPO / "configs" / "wrn50-2_config.yaml").read_bytes()


def test_config_list_names_every_bundled_config(tmp_path):
    res = wrn_launch("config", "list", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines] == ["default", "wrn50-2_config"]
    assert "WRN-50-2 on RP2K" in lines[1]


def test_every_yaml_file_of_configs_is_bundled():
    assert sorted(bundled_configs()) == sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))


def test_config_show_to_a_file(tmp_path):
    res = wrn_launch("config", "show", "wrn50-2_config", "-o", "mine.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "mine.yaml").read_bytes() == (REPO / "configs" / "wrn50-2_config.yaml").read_bytes()
    assert b"--config mine.yaml" in res.stdout
    (tmp_path / "mine.yaml").write_text("data_path: /mine\n")
    kept = wrn_launch("config", "show", "default", "-o", "mine.yaml", cwd=tmp_path)
    assert kept.returncode == 2
    assert b"mine.yaml exists" in kept.stderr
    assert b"--force" in kept.stderr
    assert (tmp_path / "mine.yaml").read_text() == "data_path: /mine\n"
    forced = wrn_launch("config", "show", "default", "-o", "mine.yaml", "--force", cwd=tmp_path)
    assert forced.returncode == 0
    assert (tmp_path / "mine.yaml").read_bytes().startswith(b"# The built-in")
    assert [p.name for p in tmp_path.iterdir()] == ["mine.yaml"]  # no temporary file left


def test_config_bad_input_is_one_line_and_exit_2(tmp_path):
    for args, words in ((("show", "defualt"), [b"no bundled config 'defualt'", b"did you mean 'default'",
                                               b"default, wrn50-2_config"]),
                        (("show", "default", "-o", str(tmp_path / "no" / "x.yaml")),
                         [b"cannot write", b"No such file or directory"]),
                        (("show", "default", "-o", str(tmp_path)), [b"is a folder"]),
                        ((), [b"required: list|show"])):
        res = wrn_launch("config", *args, cwd=tmp_path)
        assert res.returncode == 2, args
        assert res.stdout == b"", (args, res.stdout)
        assert len(res.stderr.splitlines()) == 1, res.stderr
        for word in words:
            assert word in res.stderr, (args, res.stderr)


def test_version(tmp_path):
    res = wrn_launch("--version", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().startswith(f"wrn-launch {wrn.__version__} from {REPO} (source; python ")
    assert len(res.stdout.splitlines()) == 1


def test_a_clash_of_import_names_stops_the_command(tmp_path):
    """Another project's ``cluster`` package ahead on PYTHONPATH, or another distribution that
    installs a ``launcher`` package: one paragraph, exit 2, before anything else runs."""
    shadow = tmp_path / "other"
    (shadow / "cluster").mkdir(parents=True)
    (shadow / "cluster" / "__init__.py").write_text("raise SystemExit('the wrong cluster ran')\n")
    res = wrn_launch("--version", cwd=tmp_path, env={**fake_env(), "PYTHONPATH": f"{shadow}:{REPO}"})
    err = res.stderr.decode()
    assert res.returncode == 2, err
    assert res.stdout == b""
    assert err.startswith("wrn-launch: error: the import names of wrn-launch clash")
    assert err.count("\n") == 1
    assert f"'cluster' loads from {shadow}, not from {REPO}" in err
    assert "pipx install" in err
    site = tmp_path / "site"
    dist_info = site / "launcher_tool-2.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: launcher-tool\nVersion: 2.0\n")
    (dist_info / "RECORD").write_text("launcher/__init__.py,,\nlauncher_tool-2.0.dist-info/METADATA,,\n")
    res = wrn_launch("--version", cwd=tmp_path, env={**fake_env(), "PYTHONPATH": f"{REPO}:{site}"})
    assert res.returncode == 2
    assert "'launcher' is also installed by launcher-tool 2.0" in res.stderr.decode()
