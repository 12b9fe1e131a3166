"""Property-based tests over every parser of user input: hostfiles, ``--hosts``, ``--devices``,
env files and ``--env``, rank tables, config YAML and ``--set``, run.json, metrics.jsonl,
checkpoint files and names, class folders and class indexes, data index files, CPU lists and
``npu-smi info -t topo`` output (core binding), ``--ascend-startup``, what ``wrn-launch data
prepare`` reads (archive member names, archives, folder names to repair), what ``eval`` is given
(its target, --config, --classes, its flags) and ``predict``'s flags and --classes files.

The one property: a parser returns a valid value, or raises the project's own error type with a
message that names the input (the file, line or flag); never another exception, never a
traceback. Inputs are built from the pieces that break parsers (separators, quotes, markup,
``..``, NUL, digits that ``str.isdigit`` accepts but ``int`` may not, huge numbers, surrogates)
mixed with arbitrary text. Every property is bounded (``FUZZ``) so the whole file runs in well
under a minute on two cores; ``HYPOTHESIS_PROFILE=long`` tries ten times more.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cluster.devices import parse_devices
from cluster.errors import PlanError
from cluster.hosts import parse_env_assignments, parse_env_file, parse_hostfile, parse_hosts_flag, select_hosts
from cluster.numa import MAX_CPU, numa_core_sets, parse_cpulist, parse_npu_smi_topo
from launcher.config import LaunchConfig, LaunchError

settings.register_profile("fuzz", max_examples=150, deadline=2000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=1500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "fuzz"))

#: Pieces that break parsers, mixed into arbitrary text.
PIECES = ["node1", "node2", "slots=", "devices=", "port=", "user=", "python=", "workdir=", "8",
          "0", "-1", "0-3", "3-0", "4096", "99999999999", "1" * 40, "\u00b2", "\u0663", "\uff15",
          "=", ":", ",", "#", " ", "\t", "\n", "\r\n", "'", '"', "\\", "export ", "..", "/",
          "\x00", "[/b]", "[red]", "${X}", "\u200b", "\udcff", "é", "饼干", "true", "null",
          "0x1F", ".inf", ".nan", "1e309", "-", "~", "*", "{", "}", "[", "]", "&a", "*a", "!!python/name:os.system"]
hostile = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=14).map("".join)


def _names_input(exc: Exception, *labels: str) -> None:
    text = str(exc)
    assert text.strip(), repr(exc)
    assert any(label in text for label in labels), (labels, text)


def _parsed(parse, arg, error: type[Exception], label: str):
    """``parse(arg)``, or None once the error (of type ``error``, naming ``label``) is checked."""
    try:
        return parse(arg)
    except error as exc:
        _names_input(exc, label)
        return None


def _parse_file(name: str, text: str | bytes, parse, error: type[Exception]):
    """Write ``text`` (or bytes) to a fresh file ``name`` and parse it: the value, or None once
    the error (of type ``error``, naming the file) has been checked."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8", errors="surrogateescape")
        return _parsed(parse, path, error, str(path))


# -- hosts, devices, env -------------------------------------------------------------------------
@FUZZ
@example("node1 slots=\u00b2")
@example("node1 port=\u00b2")
@example("node1 devices=0-\u0663")
@example("node1 slots=" + "1" * 5000)
@given(hostile)
def test_hostfile_lines(text):
    hosts = _parsed(lambda t: parse_hostfile(t, "fuzz.hosts"), text, PlanError, "fuzz.hosts")
    for h in hosts or ():
        assert h.slots >= 1 and (h.port is None or 0 < h.port < 65536)
        assert h.devices is None or len(h.devices) == h.slots


@FUZZ
@example("a:\u00b2")
@example("a:" + "9" * 5000)
@given(hostile)
def test_hosts_flag(text):
    hosts = _parsed(parse_hosts_flag, text, PlanError, "--hosts")
    assert all(h.slots >= 1 for h in hosts or ())


#: --include / --exclude values: host names of the list below, devices, separators, junk.
selection = st.lists(st.one_of(st.sampled_from(["node1", "node2", "node3", "@", ":", ",", "-", "0",
                                                "1", "3", "0-1", "2-9", "9" * 12, "\u00b2", " "]),
                               st.sampled_from(PIECES), st.text(max_size=4)), max_size=10).map("".join)


@FUZZ
@example("node1@node2:0,1", True)
@example("node2:1-0", False)
@example("node1:\u0663", True)
@example("node1@node1", False)
@example("node3:" + "9" * 5000, True)
@given(selection, st.booleans())
def test_include_exclude(text, include):
    """--include/--exclude: a choice of the listed hosts and devices, or an exit-2 error naming
    the flag, from the LaunchConfig (before anything starts) and from the host selection."""
    flag = "--include" if include else "--exclude"
    field_name = flag[2:]
    specs = parse_hosts_flag("node1:2,node2:2,node3:4")
    try:
        LaunchConfig(hosts="node1:2,node2:2,node3:4", **{field_name: text})
    except LaunchError as exc:
        _names_input(exc, flag)
        assert exc.exit_code == 2
    chosen = _parsed(lambda t: select_hosts(specs, **{field_name: t}), text, PlanError, flag)
    for spec in chosen or ():
        have = next(s for s in specs if s.name == spec.name)
        assert 1 <= spec.slots <= have.slots
        assert spec.devices is None or set(spec.devices) <= set(range(have.slots))


@FUZZ
@given(st.one_of(hostile, st.integers(-3, 10**12).map(str)),
       st.sampled_from(["auto", "local", "ssh", "slurm"]),
       st.one_of(st.none(), hostile, st.integers(0, 70000).map(str)))
def test_standby_flag_combinations(restarts, launcher, port):
    """--standby with whatever --max-restarts, --launcher and --port: a config that has a
    restart left, no Slurm and no fixed port, or exit 2 / one LaunchError naming a flag."""
    from launcher.cli import build_parser
    from launcher.commands.launch import launch_config

    argv = ["--hosts", "a:1,b:1", "--standby", "--max-restarts", restarts, "--launcher", launcher]
    argv += ["--port", port] if port is not None else []
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2
        return
    try:
        config = launch_config(args, (), argv)
    except LaunchError as exc:
        assert "--" in str(exc) and "\n" not in str(exc)
        return
    assert config.standby and config.max_restarts >= 1
    assert config.launcher != "slurm" and config.port is None


@FUZZ
@example("0")
@example("-1")
@example("\u00b2")
@given(st.one_of(hostile, st.integers(-5, 10**12).map(str)))
def test_min_devices_flag(text):
    """--min-devices: a whole number of 1 or more, with --max-restarts and a host list; anything
    else exits 2 with one line naming the flag."""
    from launcher.cli import build_parser
    from launcher.commands.launch import launch_config

    argv = ["--hosts", "a:1,b:1", "--max-restarts", "1", "--min-devices", text]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2
        return
    config = launch_config(args, (), argv)
    assert config.min_devices >= 1


@FUZZ
@example("\u00b2")
@example("0-\u0663")
@example("1" * 5000)
@given(st.one_of(hostile, st.integers(-10, 10**12)))
def test_devices_flag(text):
    request = _parsed(parse_devices, text, PlanError, "--devices")
    assert request is None or (request.count or 0) > 0 or request.ids


@FUZZ
@example("0-\u0663")
@example("1" * 5000)
@example("3-1")
@given(hostile)
def test_cpu_lists(text):
    cpus = _parsed(lambda t: parse_cpulist(t, "fuzz/cpulist"), text, PlanError, "fuzz/cpulist")
    assert cpus is None or (cpus and list(cpus) == sorted(set(cpus)) and cpus[-1] <= MAX_CPU)


NPU_PIECES = ["NPU0", "NPU1", "NPU\u0663", " CPU Affinity", "CPU Affinity\n", "X", "HCCS", "SYS",
              "0-23", "24-47,96-119", "\n", "  ", "Legend:", "-", ",", "99999"]


@FUZZ
@example("  NPU0  CPU Affinity\nNPU\u0663  X  0-3\n")
@given(st.lists(st.one_of(st.sampled_from(NPU_PIECES), st.sampled_from(PIECES)),
                max_size=20).map("".join))
def test_npu_smi_topology_output(text):
    topo = _parsed(parse_npu_smi_topo, text, PlanError, "npu-smi info -t topo")
    for device, cpus in (topo or {}).items():
        assert device >= 0 and cpus
        assert numa_core_sets([device], topo, cpus)[0]


@FUZZ
@given(st.text(max_size=12))
def test_ascend_startup_values(text):
    config = _parsed(lambda t: LaunchConfig(ascend_startup=t), text, LaunchError,
                     "--ascend-startup")
    assert config is None or config.ascend_startup in ("dynamic", "ranktable")


@FUZZ
@given(hostile)
def test_env_file_and_env_flag(text):
    env = _parsed(lambda t: parse_env_file(t, "fuzz.env"), text, PlanError, "fuzz.env:")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in (env or {}).items())
    _parsed(parse_env_assignments, text.splitlines(), PlanError, "--env")


@FUZZ
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=8),
       st.text(min_size=4, max_size=20).filter(lambda v: "=" not in v and v.strip()))
def test_env_file_errors_never_show_the_value(name, value):
    secret = "S3cr3t" + value
    for line in (f"{name}-x={secret}", f"{name}='{secret}", f'{name}="{secret}" x', f"={secret}"):
        try:
            parse_env_file(line, "fuzz.env")
        except PlanError as exc:
            assert secret not in str(exc)


# -- rank tables ---------------------------------------------------------------------------------
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**70), st.floats(allow_nan=True),
                      st.sampled_from(["0", "1", "10.0.0.1", "127.0.0.1", "1.0", "completed", "",
                                       "\u00b2", "192.168.1.300", "-1", "x"]), st.text(max_size=6))
json_values = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
        ["version", "server_count", "server_list", "status", "server_id", "device", "device_id",
         "device_ip", "rank_id", "x"]), inner, max_size=6)), max_leaves=25)
device = st.fixed_dictionaries({"device_id": json_leaf, "device_ip": json_leaf, "rank_id": json_leaf})
server = st.fixed_dictionaries({"server_id": json_leaf, "device": st.lists(device, max_size=3)})
table = st.fixed_dictionaries({"version": st.sampled_from(["1.0", "2.0", 1]),
                               "server_count": json_leaf, "status": st.sampled_from(["completed", "x"]),
                               "server_list": st.lists(server, max_size=3)})


@FUZZ
@given(st.one_of(table, json_values))
def test_rank_tables(data):
    from cluster.ranktable.check import RankTableError, table_from_data

    try:
        table_from_data(data, "fuzz.json")
    except RankTableError as exc:
        _names_input(exc, "fuzz.json")


@FUZZ
@given(st.one_of(hostile, st.binary(max_size=64).map(lambda b: b.decode("latin-1"))))
def test_rank_table_files(text):
    from cluster.ranktable.check import RankTableError, read_table

    _parse_file("t.json", text, read_table, RankTableError)


# -- config YAML and --set ------------------------------------------------------------------------
KEYS = ["lr", "momentum", "loss_scale", "batch_size", "checkpoint_name", "data_path", "nesterov",
        "lr_decay_epochs", "model", "amp_level", "dropout", "epoch_size", "image_size", "seed", "lrr",
        "sink_size"]
yaml_values = st.one_of(st.sampled_from(PIECES), st.sampled_from(
    ["0.1", "-1", "[30, 60]", "[a", "{a: 1}", "yes", "~", "'quoted'", "\"q\"", "1_000", "0o17",
     "2024-01-01", "&x 1", "*x", "!!binary aGk=", "|\n  text"]), st.text(max_size=8))


@FUZZ
@example([("lr", ".inf")], "")
@example([("momentum", ".inf"), ("lr", "0.1")], "lr: 0.2\n")
@example([("checkpoint_name", "../x")], "")
@given(st.lists(st.tuples(st.sampled_from(KEYS + ["", " ", "- a", "?"]), yaml_values), max_size=6),
       hostile)
def test_config_yaml(pairs, tail):
    from wrn.config import ConfigError, load_config

    text = "".join(f"{k}: {v}\n" for k, v in pairs) + tail
    cfg = _parse_file("c.yaml", text, load_config, ConfigError)
    assert cfg is None or 0 <= cfg.lr < float("inf")


@FUZZ
@example("loss_scale", ".inf")
@example("data_path", "/mnt/rp2k #2")
@example("checkpoint_name", "0x1F")
@given(st.sampled_from(KEYS + ["data-path", ""]), yaml_values)
def test_config_set(key, value):
    from wrn.config import ConfigError, load_config

    item = f"{key}={value}"
    try:
        cfg = load_config(None, [item])
    except ConfigError as exc:
        _names_input(exc, "--set")
        return
    if key in ("data_path", "checkpoint_name"):
        assert getattr(cfg, key) == value  # text as typed


# -- run.json, metrics.jsonl -----------------------------------------------------------------------
record_dicts = st.dictionaries(st.sampled_from(
    ["status", "start_time", "end_time", "wall_s", "exit_code", "plan", "processes", "agents",
     "attempts", "summary", "root_cause", "env", "command", "name", "attempt", "x"]),
    st.one_of(json_values, st.sampled_from(["2026-01-02T10:00:00", "2026-01-02T10:00:00+05:00",
                                            "running", "succeeded", "9999-99-99"]),
              st.lists(st.dictionaries(st.sampled_from(["log", "rank", "host", "pid", "name"]),
                                       json_leaf, max_size=5), max_size=3)), max_size=10)


@FUZZ
@given(st.one_of(record_dicts, json_values))
def test_run_record_from_dict(data):
    from launcher.rundir.record import RunRecord

    if not isinstance(data, dict):
        return
    record = RunRecord.from_dict(data)
    json.dumps(record.to_dict(), default=str)


@FUZZ
@given(st.one_of(record_dicts.map(json.dumps), hostile),
       st.lists(st.one_of(st.dictionaries(st.sampled_from(
           ["event", "rank", "step", "epoch", "loss", "world_size", "top1", "imgs_per_s", "model",
            "steps_per_epoch", "skipped_files", "time"]), json_leaf, max_size=8).map(json.dumps),
           hostile), max_size=8))
def test_load_run_and_the_views_of_it(run_json, metric_lines):
    import io

    from launcher.commands import logs
    from launcher.commands.report import report_renderables
    from launcher.commands.runs import runs_table
    from launcher.rundir import reading as runs

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "r"
        run.mkdir()
        (run / "run.json").write_text(run_json, encoding="utf-8", errors="surrogateescape")
        (run / "metrics.jsonl").write_text("\n".join(metric_lines), encoding="utf-8",
                                           errors="surrogateescape")
        try:
            loaded = runs.load_run(run)
        except runs.RunDirError as exc:
            _names_input(exc, str(run))
            return
        for attr in ("status", "duration_s", "world_size", "devices", "final_loss", "top1",
                     "imgs_per_s", "skipped_files"):
            getattr(loaded, attr)
        loaded.epochs()
        loaded.progress()
        from rich.console import Console
        console = Console(file=io.StringIO(), width=120)
        console.print(runs_table([loaded]))
        for item in report_renderables(loaded, 120, None):
            console.print(item)
        assert logs.main([str(run)], io.StringIO()) in (0, 2)


@FUZZ
@given(st.binary(max_size=200))
def test_metrics_reader(raw):
    from launcher.rundir.reading import read_events

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.jsonl"
        path.write_bytes(raw)
        events, bad = read_events(path)
    assert all(isinstance(e, dict) for e in events) and bad >= 0


# -- checkpoints ---------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=120), st.sampled_from([b"", b"crc_num", b"\x0a\x05\x0a\x03abc"]))
def test_checkpoint_files(raw, head):
    from wrn.checkpoint import scan_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.ckpt"
        path.write_bytes(head + raw)
        try:
            scan_checkpoint(path)
        except OSError as exc:
            _names_input(exc, str(path))


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(["wrn-e1-s2.ckpt", "wrn-e\u00b2-s1.ckpt", "wrn-e1-s\u0663.ckpt",
                                           "wrn-e" + "9" * 240 + "-s1.ckpt", "-e1-s1.ckpt",
                                           "x.ckpt", "wrn-e-s.ckpt"]),
                          st.text(alphabet="wrn-es0123456789²٣.ckpt", max_size=16)), max_size=6))
def test_checkpoint_names(names):
    from wrn.checkpoint import list_checkpoints

    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if name not in ("", ".", "..") and "/" not in name:
                (Path(tmp) / name).write_bytes(b"")
        found = list_checkpoints(tmp)
    assert all(p.suffix == ".ckpt" for p in found)


# -- class folders and class indexes ---------------------------------------------------------------
folder_names = st.one_of(st.binary(min_size=1, max_size=12).filter(
    lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b"..")),
    st.sampled_from(["饼干".encode("gbk"), "饼干".encode(), b"a b", b"%", b"[b]", b".hidden"]))


@FUZZ
@example(["饼干".encode("gbk")])
@example([b"ok", b"\xff"])
@given(st.lists(folder_names, min_size=0, max_size=5, unique=True))
def test_class_folders(names):
    from wrn.classindex import build_class_index, save_class_index
    from wrn.datapath import DataError, count_images

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "train").mkdir()
        for name in names:
            os.mkdir(os.path.join(os.fsencode(root / "train"), name))
        try:
            classes = build_class_index(root)
            count_images(root)
            save_class_index(classes, root / "classes.json")
        except DataError as exc:
            _names_input(exc, str(root / "train"))
            assert not [p for p in root.iterdir() if p.name not in ("train",)]  # no temp file
            return
    assert classes == sorted(classes)


# -- data prepare: archive member names and archives ------------------------------------------
name_bytes = st.one_of(st.binary(max_size=24), st.lists(st.sampled_from(
    [b"all/", b"train/", b"../", b"/", b"\\", b"C:", b"\x00", b"\x01", "饼干".encode("gbk"),
     "饼干".encode(), b"\xff", b"\x81\x40", b".", b"..", b"a" * 300]), max_size=6).map(b"".join))


@FUZZ
@example([b"../x"], False)
@example(["饼干".encode("gbk"), b"\xff\xfe"], False)
@given(st.lists(name_bytes, min_size=1, max_size=4), st.booleans())
def test_archive_member_names(raws, flag):
    from wrn.dataprep import PrepareError, choose_encoding, decode_name, safe_member_path

    try:
        enc = "utf-8" if flag else choose_encoding(raws)
        for raw in raws:
            path = safe_member_path(decode_name(raw, flag, "ascii" if enc == "ascii" else enc))
            assert not path.startswith("/") and ".." not in path.split("/")
            assert all(ord(c) >= 32 for c in path)
    except PrepareError as exc:
        assert str(exc).strip()


@FUZZ
@example(b"WRNIDX01" + (10).to_bytes(8, "little") + b'{"version"')
@given(st.one_of(st.binary(max_size=120), st.binary(max_size=80).map(lambda b: b"WRNIDX01" + b)))
def test_data_index_files(raw):
    from wrn.dataindex import load_index

    _parse_file("x.idx", raw, load_index, ValueError)


@FUZZ
@given(st.text(max_size=12))
def test_repairing_a_name_never_fails(name):
    from wrn.dataprep import repair_name

    fixed = repair_name(name)
    assert fixed is None or isinstance(fixed, str) and fixed != name


@FUZZ
@example(b"PK\x03\x04")
@example(b"PK\x05\x06" + b"\0" * 18)
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=60).map(lambda b: b"PK\x03\x04" + b)))
def test_archives(raw):
    from wrn.dataprep import PrepareError, prepare

    _parse_file("data.zip", raw, lambda path: prepare(path, path.parent / "out"), PrepareError)


@FUZZ
@given(st.one_of(json_values.map(json.dumps), hostile))
def test_class_index_files(text):
    from wrn.classindex import load_class_index
    from wrn.datapath import DataError

    classes = _parse_file("classes.json", text, load_class_index, DataError)
    assert classes is None or classes and all(isinstance(c, str) and c for c in classes)


FAULT_PIECES = ["hang", "crash", "slow", ":", "rank=", "step=", "factor=", "attempt=", "all", ",",
                "1", "0", "-1", "3.5", "nan", "inf", "1e309", "\u00b2", "\u0663", "=", " "]
fault_text = st.one_of(hostile, st.lists(st.sampled_from(FAULT_PIECES), max_size=12).map("".join))


@FUZZ
@example("hang:rank=\u00b2:step=5")
@example("slow:rank=1:factor=nan")
@example("slow:rank=1:factor=1e309")
@example("crash:rank=1:step=5:step=6")
@given(fault_text)
def test_fault_injection_text(text):
    """WRN_FAULT: faults, or one ConfigError naming the variable and the format."""
    from wrn.config import ConfigError
    from wrn.faults import check_ranks, parse_faults

    faults = _parsed(parse_faults, text, ConfigError, "WRN_FAULT")
    if faults is not None:
        assert all(f.kind in ("hang", "crash", "slow") and f.rank >= 0 for f in faults)
        assert all((f.step or 0) >= 1 or f.factor > 1 for f in faults)
        _parsed(lambda fs: check_ranks(fs, 2), faults, ConfigError, "WRN_FAULT")


@FUZZ
@example("0,\u00b2")
@example("3-0")
@example("9" * 40)
@given(st.one_of(hostile, st.lists(st.sampled_from(["0", "3", "-", ",", "12", " "]), max_size=8).map("".join)))
def test_tail_ranks_flag(text):
    """--tail-ranks: sorted distinct ranks, or one LaunchError naming the flag."""
    from launcher.config import LaunchError, parse_rank_list

    ranks = _parsed(parse_rank_list, text, LaunchError, "--tail-ranks")
    if ranks is not None:
        assert ranks and list(ranks) == sorted(set(ranks)) and ranks[0] >= 0


# -- launch flags with values --------------------------------------------------------------------
VALUE_FLAGS = ["--grace", "--stall-timeout", "--stall-kill", "--startup-timeout",
               "--heartbeat-timeout", "--ssh-timeout", "--port", "--port-range", "--max-restarts",
               "--threads-per-worker", "--hccl-connect-timeout", "--hccl-exec-timeout", "--tail-ranks"]
NUMBERS = ["0", "1", "2.5", "-1", "nan", "inf", "-inf", "1e309", "0x10", "\u00b2", "\u0663", "",
           " ", "3 ", "1_000", "70000", "29500-29400", "29500-29600"]


@FUZZ
@given(st.sampled_from(VALUE_FLAGS), st.one_of(st.sampled_from(NUMBERS), hostile))
def test_launch_flags_with_values(flag, value):
    """A value flag gives a config, or exit 2 naming the flag (argparse), or ``LaunchError``
    naming it; nothing else."""
    import contextlib
    import io

    from launcher.cli import build_parser
    from launcher.commands.launch import launch_config
    from launcher.config import LaunchError

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args([f"{flag}={value}", "--dry-run"])
    except SystemExit as exc:
        assert exc.code == 2
        assert flag in err.getvalue(), err.getvalue()
        return
    try:
        launch_config(args, (), ())
    except LaunchError as exc:
        _names_input(exc, flag)


@FUZZ
@example("2(x3),1", 4)
@example("1(x" + "9" * 40 + ")", 2)
@example("\u0663", 1)
@given(hostile, st.integers(1, 64))
def test_slurm_tasks_per_node(text, count):
    from launcher.backends.slurm import tasks_per_node

    found = tasks_per_node(text, count)
    assert found == [] or (len(found) == count and all(isinstance(n, int) and n > 0 for n in found))


@FUZZ
@given(st.one_of(hostile, json_values.map(json.dumps)))
def test_slurm_json_of_a_run_dir(text):
    from launcher.backends.slurm import run_job_id

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "slurm.json").write_text(text, encoding="utf-8", errors="surrogateescape")
        job = run_job_id(Path(tmp))
    assert job is None or (isinstance(job, str) and job.strip())


@FUZZ
@example("slurm", 0)
@example("ssh", 2)
@given(st.one_of(st.sampled_from(["auto", "local", "ssh", "slurm"]), hostile),
       st.one_of(st.none(), st.integers(-3, 10**12), st.booleans(), hostile))
def test_launcher_and_devices_per_node(launcher, per_node):
    from launcher.config import LaunchConfig, LaunchError

    try:
        LaunchConfig(launcher=launcher, devices_per_node=per_node)
    except LaunchError as exc:
        _names_input(exc, "--launcher", "--devices-per-node")


@FUZZ
@given(st.sampled_from(["partition", "time", "account", "sbatch_arg"]), hostile)
def test_sbatch_values_on_their_lines(flag, value):
    """An #SBATCH value is accepted only when it stays on its line of job.sbatch; otherwise
    ``SbatchError`` naming the flag."""
    import argparse

    from launcher.commands.sbatch import SbatchError, _check_sbatch_values

    fields = {"partition": None, "time": None, "account": None, "sbatch_arg": []}
    fields[flag] = [value] if flag == "sbatch_arg" else value
    try:
        _check_sbatch_values(argparse.Namespace(**fields))
    except SbatchError as exc:
        _names_input(exc, "--" + flag.replace("_", "-"))
        return
    assert value.isprintable()


# -- wrn-launch eval -------------------------------------------------------------------------------
@FUZZ
@example("~nobody-here/run", None, None)
@example("x.ckpt", "\x00", None)
@given(hostile, st.one_of(st.none(), hostile), st.one_of(st.none(), hostile))
def test_eval_targets(target, config, classes):
    """What ``eval`` is given to evaluate (CKPT_OR_RUN_DIR, --config, --classes) resolves, or is
    a ``CheckpointChoiceError`` naming it; never another exception."""
    from launcher.rundir.checkpoints import CheckpointChoiceError, checkpoint_inputs

    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            checkpoint_inputs(target, config, classes)
        except CheckpointChoiceError as exc:
            _names_input(exc, target, "--config", "--classes", "config.yaml")
        finally:
            os.chdir(cwd)


@FUZZ
@given(st.sampled_from(VALUE_FLAGS + ["--config", "--classes", "--set", "--run-dir", "--name"]),
       st.one_of(st.sampled_from(NUMBERS), hostile))
def test_eval_flags_with_values(flag, value):
    """``eval RUN --flag=value`` parses to launch values, or exits 2 naming the flag."""
    import contextlib
    import io

    from launcher.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(["eval", "RUN", f"{flag}={value}"])
    except SystemExit as exc:
        assert exc.code == 2
        assert flag in err.getvalue(), err.getvalue()
        return
    assert args.target == "RUN"


# -- wrn-launch predict --------------------------------------------------------------------------
label_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 10**20), st.text(max_size=6)),
                            lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                   st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                            max_leaves=8)


@FUZZ
@example("classes.json", '{"a.jpg": 0, "b.JPG": 1}')
@example("classes.json", '{"a": 1}')
@example("labels.txt", "\ufeff饼干\n\n可乐\n")
@given(st.sampled_from(["classes.json", "labels.txt", "imagenet_label.json", "classes", "c.yaml"]),
       st.one_of(label_values.map(json.dumps), hostile, st.binary(max_size=40)))
def test_predict_class_index_files(name, text):
    """A --classes file (classes.json, {name: index}, ModelZoo's {image: label}, one name per
    line) reads into a class index or is a ``PredictError`` naming the file."""
    from wrn.labelfiles import PredictError, read_class_index

    _parse_file(name, text, read_class_index, PredictError)


@FUZZ
@given(st.sampled_from(["--top-k", "--batch-size", "--device-id", "--backend", "-o", "--classes", "--config"]),
       st.one_of(st.sampled_from(NUMBERS), hostile))
def test_predict_flags_with_values(flag, value):
    """``predict MODEL IMAGES --flag=value`` parses, or exits 2 naming the flag."""
    import contextlib
    import io

    from launcher.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(["predict", "m.ckpt", "img", f"{flag}={value}"])
    except SystemExit as exc:
        assert exc.code == 2
        assert flag in err.getvalue() or flag.lstrip("-") in err.getvalue(), err.getvalue()
        return
    assert args.model == "m.ckpt" and args.images == ["img"]
