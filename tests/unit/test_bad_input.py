"""Hostile or mistyped input is one clear error (the project's own error type, exit status 2 on
the command line), never a traceback or a silently changed value."""

from __future__ import annotations

import pytest

from cluster.devices import parse_devices
from cluster.errors import PlanError
from cluster.hosts import parse_hostfile, parse_hosts_flag

# digits that str.isdigit() accepts but are not ASCII digits: superscript two, Arabic-Indic
# three, full-width five; and a number too long for int() to read
ODD_NUMBERS = ["\u00b2", "\u0663", "\uff15", "1" * 5000]


@pytest.mark.parametrize("value", ODD_NUMBERS)
def test_odd_numbers_in_hosts_and_devices_are_plan_errors(value):
    cases = [(parse_hostfile, f"node1 slots={value}", "hostfile:1: host node1: bad slot count"),
             (parse_hostfile, f"node1 port={value}", "hostfile:1: host node1: port="),
             (parse_hosts_flag, f"node1:{value}", "--hosts node1:.*bad slot count"),
             (parse_devices, value, "--devices"),
             (parse_devices, f"0-{value}", "--devices"),
             (parse_hostfile, f"node1 devices={value}", "hostfile:1: host node1: devices=")]
    for parse, text, message in cases:
        with pytest.raises(PlanError, match=message):
            parse(text)


HOSTILE_RECORDS = [
    {"status": "succeeded", "start_time": "2026-01-02T10:00:00"},  # naive: no time zone
    {"status": "running", "start_time": "2026-01-02T10:00:00", "wall_s": None},
    {"status": "failed", "start_time": "2026-01-02T10:00:00+00:00", "end_time": "2026-01-02T11:00:00"},
    {"status": 3, "start_time": 5, "plan": [], "summary": "x", "wall_s": "long", "name": 7},
    {"status": "succeeded", "plan": {"world_size": "8", "hosts": "h1", "device_target": 4}},
    {"status": "succeeded", "plan": {"world_size": 2, "hosts": [1, None]}, "summary": {"loss": "x"}},
    {"processes": [{"log": 5, "rank": "0"}, "x", None], "agents": {"a": 1}, "attempts": [3]},
    [], "text", None, 3,
]


@pytest.mark.parametrize("data", HOSTILE_RECORDS)
def test_runs_and_logs_read_any_run_json_without_a_traceback(tmp_path, data):
    import io
    import json

    from launcher.commands import logs, runs

    run = tmp_path / "runs" / "r1"
    (run / "logs").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps(data))
    (run / "metrics.jsonl").write_text('{"event":"start","rank":0,"world_size":"2"}\n[1]\n"x"\n'
                                       '{"event":"step","rank":"0","loss":"nan","step":1}\n'
                                       '{"event":"epoch_end","epoch":"1","rank":0}\n')
    out = io.StringIO()
    assert runs.main([str(tmp_path / "runs")], out) in (0, 2)
    assert logs.main([str(run)], io.StringIO()) in (0, 2)


def test_runs_sorts_naive_and_aware_start_times_together(tmp_path):
    import io
    import json

    from launcher.commands import runs

    for name, start in (("a", "2026-01-02T10:00:00"), ("b", "2026-01-03T10:00:00+00:00")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps({"status": "succeeded", "start_time": start}))
    out = io.StringIO()
    assert runs.main([str(tmp_path)], out) == 0
    assert "succeeded" in out.getvalue()


def _launch(tmp_path, *args):
    from launcher import cli

    devices = [] if "--hosts" in args or "--devices" in args else ["--devices", "1"]
    return cli.main([*devices, "--backend", "cpu", "--dry-run", "--plain",
                     "--run-dir", str(tmp_path / "run"), *args])


@pytest.mark.parametrize("flag", ["--resume-ckpt", "--pretrained"])
def test_a_corrupt_checkpoint_is_refused_before_anything_starts(tmp_path, capsys, flag):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x0a\x05garbage" * 10)
    assert _launch(tmp_path, flag, str(bad)) == 2
    err = capsys.readouterr().err
    assert f"{flag} {bad}" in err and "not a readable checkpoint" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def _dataset(root, classes=(b"cat", b"dog"), images=2):
    import os

    for name in classes:
        folder = os.path.join(os.fsencode(root), b"train", name)
        os.makedirs(folder)
        for i in range(images):
            with open(os.path.join(folder, b"%d.jpg" % i), "wb") as fh:
                fh.write(b"\xff\xd8\xff\xd9")
    return root


def test_a_class_folder_named_in_gbk_is_one_error_saying_how_to_fix(tmp_path):
    from wrn.classindex import build_class_index, save_class_index
    from wrn.datapath import DataError

    root = _dataset(tmp_path / "d", (b"cat", "\u997c\u5e72".encode("gbk")))
    with pytest.raises(DataError, match=r"not valid UTF-8.*unzip -O GBK.*convmv"):
        save_class_index(build_class_index(root), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_launcher_refuses_gbk_class_folders_and_too_little_data(tmp_path, capsys):
    root = _dataset(tmp_path / "gbk", (b"cat", "\u997c\u5e72".encode("gbk")))
    assert _launch(tmp_path, "--set", f"data_path={root}") == 2
    err = capsys.readouterr().err
    assert "not valid UTF-8" in err and "Traceback" not in err
    small = _dataset(tmp_path / "small", images=3)  # 6 images
    assert _launch(tmp_path, "--set", f"data_path={small}", "--set", "batch_size=8") == 2
    err = capsys.readouterr().err
    assert "6 images" in err and "batch_size=8" in err and "Traceback" not in err
    assert _launch(tmp_path, "--set", f"data_path={small}", "--set", "batch_size=6") == 0


@pytest.mark.parametrize("args", [["--devices", "\u00b2"], ["--hosts", "a:\u00b2"]])
def test_odd_numbers_on_the_command_line_exit_2(tmp_path, capsys, args):
    assert _launch(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert "\u00b2" in err and "Traceback" not in err


@pytest.mark.parametrize("item, message", [
    ("lr=.inf", "'lr' must be a finite number"),
    ("momentum=.inf", "'momentum' must be a finite number"),
    ("loss_scale=.inf", "'loss_scale' must be a finite number"),
    ("lr=.nan", "'lr'"),
    ("checkpoint_name=../x", "'checkpoint_name'"),
    ("checkpoint_name=a/b", "'checkpoint_name'"),
    ("checkpoint_name=.hidden", "'checkpoint_name'"),
    ("checkpoint_name=", "'checkpoint_name'"),
])
def test_overrides_that_were_silently_accepted_are_config_errors(item, message):
    from wrn.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=f"--set {item!r}: {message}"):
        load_config(None, [item])


def test_string_fields_from_set_are_taken_as_typed():
    from wrn.config import load_config

    cfg = load_config(None, ["data_path=/mnt/rp2k #2", "checkpoint_name=0x1F",
                             "summary_base_dir=[a]", "ckpt_path=~/ck: x"])
    assert cfg.data_path == "/mnt/rp2k #2"
    assert cfg.checkpoint_name == "0x1F"
    assert cfg.summary_base_dir == "[a]"
    assert cfg.ckpt_path == "~/ck: x"


def test_string_fields_in_yaml_keep_their_text(tmp_path):
    from wrn.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("checkpoint_name: 0x1F\nsummary_base_dir: 1e3\n")
    cfg = load_config(path)
    assert (cfg.checkpoint_name, cfg.summary_base_dir) == ("0x1F", "1e3")


def test_a_duplicate_yaml_key_names_both_lines(tmp_path):
    from wrn.config import ConfigError, load_config

    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.1\nbatch_size: 8\nlr: 0.5\n")
    with pytest.raises(ConfigError, match=rf"{path} line 3: 'lr' is also set on line 1"):
        load_config(path)


@pytest.mark.parametrize("args, message", [
    (["--standby"], "add --max-restarts K"),
    (["--standby", "--max-restarts", "1", "--port", "29000"], "drop --port"),
    (["--standby", "--max-restarts", "1", "--launcher", "slurm", "--devices-per-node", "1"],
     "not built for --launcher slurm"),
    (["--standby", "--max-restarts", "1", "--backend", "ascend", "--devices", "0"],
     "CPU workers only"),
])
def test_standby_without_what_it_needs_is_one_error(tmp_path, capsys, args, message):
    from launcher import cli

    devices = [] if "--devices" in args or "--devices-per-node" in args else ["--devices", "1"]
    backend = [] if "--backend" in args else ["--backend", "cpu"]
    code = cli.main([*devices, *backend, "--dry-run", "--plain", "--run-dir",
                     str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_standby_inside_a_slurm_allocation_is_one_error(tmp_path, capsys, monkeypatch):
    from launcher import cli

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    code = cli.main(["--backend", "cpu", "--dry-run", "--plain", "--run-dir",
                     str(tmp_path / "run"), "--standby", "--max-restarts", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "SLURM_JOB_ID=4242" in err and "drop --standby" in err and "Traceback" not in err
