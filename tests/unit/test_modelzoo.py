"""``wrn-launch report --modelzoo``: the ModelZoo README performance tables of a run.

The run directory is built from the recorded events of a real 2-rank CPU run of the default
config (``tests/fixtures/events/real2.jsonl``) with the files the launcher and the worker leave
beside them (run.json, config.yaml, classes.json, checkpoints, eval.json). Every field of both
templates must be there in English and Chinese, filled or marked unknown, and the numbers must
be the run's own: recomputed here from the files, not copied from the code under test. Also:
the record of the launching host (``launcher.hostinfo``, run.json's ``machines``), and the
command's flags, with properties over ``--lang`` and over run directories with parts missing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.plan import Node
from launcher.cli import build_parser
from launcher.commands import report
from launcher.hostinfo import cpu_model, machines, memory_gib, this_host
from launcher.rundir.artifacts import built_parameters, read_artifacts
from launcher.rundir.reading import load_run
from launcher.rundir.record import RunRecord
from launcher.ui.modelzoo import (
    INFERENCE_LABELS,
    LANGS,
    TRAINING_LABELS,
    inference_table,
    markdown,
    modelzoo_markdown,
    training_table,
)
from tests.support import EVENTS
from wrn.config import dump_config, load_config
from wrn.hostname import host_name

UNKNOWN = {"en": "unknown", "zh": "未知"}
CLASSES = [f"class-{i}" for i in range(10)]
CKPT_SIZES = {"wrn-sample-e0004-s000018.ckpt": 1000, "wrn-sample-e0008-s000018.ckpt": 2000,
              "wrn-sample-e0010-s000018.ckpt": 2_437_683}
BEST = "wrn-sample-e0010-s000018.ckpt"
MACHINE = {"usable_cores": 2, "cpu": "AMD EPYC 7B13", "cores": 2, "memory_gib": 23.5}


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def events() -> list[dict]:
    return [json.loads(line) for line in (EVENTS / "real2.jsonl").read_text().splitlines()]


def make_run(root: Path, *, config: bool = True, classes: bool = True, checkpoints: bool = True,
             eval_json: bool = True, machine: bool = True, versions: bool = True) -> Path:
    """A finished 2-rank run directory as the launcher and the workers leave it (the parts
    switched off are missing, as in older or damaged runs)."""
    records = events()
    run = root / "run"
    (run / "logs").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    t0, t1 = records[0]["time"] - 5, records[-1]["time"] + 1
    info = {"format": 1, "status": "succeeded", "start_time": iso(t0), "end_time": iso(t1),
            "wall_s": round(t1 - t0, 3), "backend": "cpu", "exit_code": 0,
            "plan": {"world_size": 2, "hosts": ["node1"], "device_target": "CPU"},
            "summary": {"best_checkpoint": f"/elsewhere/run/checkpoints/{BEST}"}}
    if versions:
        info["versions"] = {"python": "3.11.7", "mindspore": "2.10.0", "wrn-launch": "0.2.0"}
    if machine:
        info["machines"] = {"node1": MACHINE}
    (run / "run.json").write_text(json.dumps(info))
    if config:
        dump_config(load_config(), run / "config.yaml")
    if classes:
        (run / "classes.json").write_text(json.dumps(CLASSES, ensure_ascii=False))
    if checkpoints:
        (run / "checkpoints").mkdir()
        for name, size in CKPT_SIZES.items():
            (run / "checkpoints" / name).write_bytes(b"\0" * size)
    if eval_json:  # the training's final evaluation, as wrn.loop's Evaluator writes it
        last = [r for r in records if r["event"] == "eval"][-1]
        (run / "eval.json").write_text(json.dumps(
            {k: last[k] for k in ("top1", "correct", "total", "loss", "epoch")}
            | {"split": "test", "classes": 10, "model": "wrn10_2", "world_size": 2}))
    return run


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    return make_run(tmp_path)


def tables(run: Path, lang: str):
    loaded = load_run(run)
    found = read_artifacts(loaded)
    return training_table(loaded, found, lang), inference_table(loaded, found, lang)


def cell(table, key: str) -> str:
    return table.row(key).cell(table.lang)


# -- expected numbers, recomputed from the files ----------------------------------------------------
def median_ms_per_step(records: list[dict]) -> tuple[float, int]:
    """Rank 0's step events: ms per step between two of the same epoch, epoch 1 left out."""
    steps = [r for r in records if r["event"] == "step" and r["rank"] == 0]
    values = [(b["time"] - a["time"]) / (b["global_step"] - a["global_step"]) * 1000
              for a, b in zip(steps, steps[1:]) if a["epoch"] == b["epoch"] and b["epoch"] > 1]
    return statistics.median(values), len(values)


def final_loss(records: list[dict]) -> float:
    ends = [r for r in records if r["event"] == "epoch_end"]
    last = max(r["epoch"] for r in ends)
    losses = [r["loss"] for r in ends if r["epoch"] == last]
    return sum(losses) / len(losses)


# -- the tables -------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", LANGS)
def test_every_field_of_both_templates_is_filled_or_unknown(run_dir, lang):
    i = LANGS.index(lang)
    train, infer = tables(run_dir, lang)
    for table, labels in ((train, TRAINING_LABELS), (infer, INFERENCE_LABELS)):
        assert [r.key for r in table.rows] == list(labels)
        assert [r.label for r in table.rows] == [pair[i] for pair in labels.values()]
        text = markdown(table)
        for row in table.rows:
            value = row.cell(lang)
            assert value.strip(), row
            assert row.value is not None or value.startswith(UNKNOWN[lang]), row
            assert f"| {row.label} | " in text
    # a complete run leaves only the exported model unknown
    assert [r.key for r in train.rows + infer.rows if r.value is None] == ["model_for_inference"]
    heads = {"en": ("### Training Performance", "### Inference Performance"),
             "zh": ("### 训练性能", "### 推理性能")}[lang]
    out = modelzoo_markdown(load_run(run_dir), read_artifacts(load_run(run_dir)), lang)
    assert out.index(heads[0]) < out.index(heads[1])
    assert out.count("| Parameters | CPU |" if lang == "en" else "| 参数 | CPU |") == 2


def test_the_numbers_are_the_runs_own(run_dir):
    records = events()
    info = json.loads((run_dir / "run.json").read_text())
    config = load_config(run_dir / "config.yaml")
    train, infer = tables(run_dir, "en")

    ms, intervals = median_ms_per_step(records)
    assert cell(train, "speed") == f"2p: {ms:.0f} ms/step"
    assert f"median of {intervals} intervals between rank 0's step events" in " ".join(train.notes)
    assert cell(train, "total_time") == f"2p: {info['wall_s'] / 60:.1f} mins"
    assert f"wall_s = {info['wall_s']:.1f} s" in " ".join(train.notes)
    assert cell(train, "loss") == f"{final_loss(records):.4g}"
    start = next(r for r in records if r["event"] == "start")
    assert cell(train, "parameters") == f"{start['params'] / 1e6:.2f} ({start['params']:,})"
    assert cell(train, "checkpoint") == "2.3M (.ckpt file)"  # the best one, found by its name
    assert f"checkpoints/{BEST}, {CKPT_SIZES[BEST]:,} bytes (the best-evaluated epoch's)" in " ".join(train.notes)
    assert cell(train, "model_version") == f"WRN-10-2 ({config.model})"
    assert cell(train, "mindspore_version") == "2.10.0"
    assert cell(train, "scripts") == "wrn-launch 0.2.0"
    end = dt.datetime.fromisoformat(info["end_time"])
    assert cell(train, "uploaded_date") == f"{end:%m/%d/%Y} (month/day/year)"
    assert cell(train, "resource") == ("2 × CPU (1 host: node1); CPU AMD EPYC 7B13, 2 cores; "
                                       "Memory 23.5 GiB")
    assert cell(train, "dataset") == (f"{config.data_path}: {start['train_images']:,} training / "
                                      f"{start['test_images']:,} test images, 10 classes "
                                      f"(1 unreadable image skipped)")
    assert cell(train, "training_parameters") == (
        f"epoch={config.epoch_size}, steps per epoch={start['steps_per_epoch']}, "
        f"batch_size={config.batch_size} per device (2 devices: {2 * config.batch_size} per step), "
        f"lr={config.lr:g} (cosine decay to {config.lr_end:g}, {config.warmup_epochs:g} warm-up epoch), "
        f"momentum={config.momentum:g}, weight_decay={config.weight_decay:g}, amp_level=O0")
    assert cell(train, "optimizer") == ("Momentum (Nesterov)" if config.nesterov else "Momentum")
    assert cell(train, "loss_function") == "Softmax Cross Entropy"
    assert cell(train, "outputs") == "probability (10 classes)"

    evaluated = json.loads((run_dir / "eval.json").read_text())
    assert cell(infer, "accuracy") == (f"2p: top-1 {evaluated['top1'] * 100:.2f}% "
                                       f"({evaluated['correct']}/{evaluated['total']})")
    assert cell(infer, "batch_size") == f"{config.batch_size} per device"
    assert cell(infer, "dataset") == f"{config.data_path}: test split, {evaluated['total']} images"
    assert cell(infer, "resource") == cell(train, "resource")  # the training's own evaluation
    assert cell(infer, "uploaded_date") == cell(train, "uploaded_date")
    assert cell(infer, "model_for_inference").startswith("unknown (no .mindir, .onnx or .air file")


def test_chinese_tables_say_the_same_in_chinese(run_dir):
    records = events()
    train, infer = tables(run_dir, "zh")
    ms, _ = median_ms_per_step(records)
    assert cell(train, "speed") == f"2卡：{ms:.0f}毫秒/步"
    info = json.loads((run_dir / "run.json").read_text())
    assert cell(train, "total_time") == f"2卡：{info['wall_s'] / 60:.1f}分钟"
    assert cell(train, "loss_function") == "Softmax交叉熵"
    assert cell(train, "outputs") == "概率（10类）"
    assert cell(train, "checkpoint") == "2.3M（.ckpt文件）"
    assert cell(train, "uploaded_date") == f"{dt.datetime.fromisoformat(info['end_time']):%Y-%m-%d}"
    assert cell(infer, "accuracy").startswith("2卡：top-1 98.33%（295/300）")
    assert cell(infer, "model_for_inference").startswith("未知（")
    for text in (markdown(train), markdown(infer)):
        assert "unknown" not in text and "Notes:" not in text


def test_fields_the_run_does_not_hold_are_unknown_with_the_reason(tmp_path):
    run = make_run(tmp_path, config=False, classes=False, checkpoints=False, eval_json=False,
                   machine=False, versions=False)
    for lang in LANGS:
        train, infer = tables(run, lang)
        assert train.row("optimizer").value is None and train.row("checkpoint").value is None
        assert train.row("mindspore_version").value is None
        if lang == "en":
            assert cell(train, "optimizer") == "unknown (no readable config.yaml in the run directory)"
            assert cell(train, "checkpoint") == "unknown (no checkpoint in checkpoints/)"
            assert cell(train, "mindspore_version") == "unknown (not recorded in run.json)"
            assert "CPU and memory unknown: not recorded by this run (wrn-launch)" in cell(train, "resource")
            assert cell(train, "scripts") == "wrn-launch (version not recorded in run.json)"
        # the events still give what they hold
        assert train.row("speed").value and train.row("loss").value and train.row("parameters").value
        assert all(r.value is None for r in infer.rows)
        assert f"eval {run}" in " ".join(infer.notes)  # how to get a result
        assert infer.column == UNKNOWN[lang]


def test_a_run_still_running_has_no_date_or_total_time_yet(run_dir):
    info = json.loads((run_dir / "run.json").read_text())
    for key in ("end_time", "wall_s", "exit_code"):
        info.pop(key)
    (run_dir / "run.json").write_text(json.dumps(info | {"status": "running"}))
    train, _ = tables(run_dir, "en")
    status = load_run(run_dir).status  # no launcher holds the run: "lost" unless processes live
    assert cell(train, "uploaded_date") == f"unknown (the run has not finished: its status is {status})"
    assert cell(train, "total_time").startswith("unknown (")
    assert train.notes[0].startswith(f"The run's status is {status}")
    assert train.row("speed").value  # what the events hold so far


def test_newest_evaluation_and_prediction_and_exported_model(run_dir):
    stamp = run_dir / "eval" / "eval-20990101-000000"
    stamp.mkdir(parents=True)
    (stamp / "eval.json").write_text(json.dumps(
        {"kind": "eval", "checkpoint": str(run_dir / "checkpoints" / BEST), "top1": 0.5, "top5": 0.9,
         "correct": 150, "total": 300, "batch_size": 16, "world_size": 1, "model": "wrn10_2",
         "classes": 10, "data": "/data/rp2k/test", "time": "2099-01-01T00:00:05Z"}))
    launch = {"status": "succeeded", "plan": {"world_size": 1, "hosts": ["gpu7"], "device_target": "GPU"},
              "versions": {"mindspore": "2.11.0"}, "machines": {"gpu7": {"usable_cores": 8}}}
    (stamp / "run.json").write_text(json.dumps(launch))
    (run_dir / "predict").mkdir()
    (run_dir / "predict" / "20990102T000000Z.json").write_text(json.dumps(
        {"kind": "predict", "model": "model.mindir", "format": "MINDIR", "model_bytes": 1_300_000,
         "batch_size": 8, "images": 40, "unreadable": 0, "top1": None, "correct": None, "total": None,
         "imgs_per_s": 100.0, "seconds": 0.4, "time": "2099-01-02T00:00:00Z"}))
    (run_dir / "other.onnx").write_bytes(b"x" * 10)
    _, infer = tables(run_dir, "en")
    # accuracy from the newest evaluation (wrn-launch eval's), not the training's eval.json
    assert cell(infer, "accuracy") == "1p: top-1 50.00% (150/300), top-5 90.00%"
    assert cell(infer, "batch_size") == "16 per device"
    assert cell(infer, "uploaded_date") == "01/01/2099 (month/day/year)"
    assert cell(infer, "mindspore_version") == "2.11.0"
    assert cell(infer, "dataset") == "/data/rp2k/test: 300 images"
    assert cell(infer, "resource").startswith("1 × GPU (1 host: gpu7); gpu7: 8 cores used")
    assert infer.column == "GPU"
    # the prediction of an exported model gives its size
    assert cell(infer, "model_for_inference") == "1.2M (.mindir file)"
    assert "Model for inference: model.mindir, 1,300,000 bytes." in infer.notes

    shutil.rmtree(run_dir / "eval")
    (run_dir / "eval.json").unlink()
    _, infer = tables(run_dir, "en")  # only the prediction, unlabelled: no accuracy
    assert cell(infer, "accuracy").startswith("unknown (the newest result has no accuracy")
    assert cell(infer, "batch_size") == "8"
    (run_dir / "predict" / "20990102T000000Z.json").unlink()
    _, infer = tables(run_dir, "en")  # no result at all; the exported file still counts
    assert cell(infer, "model_for_inference") == "10B (.onnx file)"
    assert cell(infer, "accuracy") == "unknown (no evaluation or prediction result in this run)"


def test_speed_leaves_out_each_processes_first_epoch_after_a_restart(tmp_path):
    run = make_run(tmp_path)
    records = events()
    ms, count = median_ms_per_step(records)
    # a restart: rank 0 starts again and repeats epochs 9 and 10, each 10 steps in 10 s and 8 in
    # 100 s; its first epoch (9) is left out, epoch 10 adds one interval of 12,500 ms per step
    t = records[-1]["time"] + 10
    extra = [dict(next(r for r in records if r["event"] == "start" and r["rank"] == 0), time=t)]
    for epoch, g0 in ((9, 144), (10, 162)):
        for step in (10, 18):
            t += 100.0 if step == 18 else 10.0
            extra.append({"v": 1, "event": "step", "rank": 0, "time": t, "epoch": epoch, "step": step,
                          "global_step": g0 + step, "loss": 1.0})
    with open(run / "metrics.jsonl", "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in extra)
    train, _ = tables(run, "en")
    steps = [r for r in records if r["event"] == "step" and r["rank"] == 0]
    values = [(b["time"] - a["time"]) / (b["global_step"] - a["global_step"]) * 1000
              for a, b in zip(steps, steps[1:]) if a["epoch"] == b["epoch"] and b["epoch"] > 1]
    assert statistics.median(values) == ms
    assert cell(train, "speed") == f"2p: {statistics.median(values + [12500.0]):.0f} ms/step"
    assert f"median of {count + 1} intervals" in " ".join(train.notes)


def test_parameters_are_counted_like_wrn_launch_model_when_the_start_event_lacks_them(tmp_path):
    run = make_run(tmp_path)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for record in lines:
        record.pop("params", None)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    loaded = load_run(run)
    assert read_artifacts(loaded).params_built is None  # not asked for: MindSpore not imported
    found = read_artifacts(loaded, count_parameters=True)
    config = load_config(run / "config.yaml")
    from wrn.models import build_model, count_trainable  # what `wrn-launch model` prints
    expected = count_trainable(build_model(config.model, config.num_classes, config.image_size))
    assert found.params_built == expected == 303706
    train = training_table(loaded, found, "en")
    assert cell(train, "parameters") == "0.30 (303,706)"
    assert "counted by building the config's model" in " ".join(train.notes)
    assert built_parameters({"model": "resnet50", "num_classes": 10, "image_size": 32}) is None


# -- the command -------------------------------------------------------------------------------------
def test_report_modelzoo_prints_markdown_and_writes_no_plot(run_dir, tmp_path, capsys):
    assert report.main([str(run_dir), "--modelzoo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### Training Performance\n\n| Parameters | CPU |\n| --- | --- |\n")
    assert "| Speed | 2p: " in out and "### Inference Performance" in out
    assert not (run_dir / report.PLOT_NAME).exists()
    assert report.main([str(run_dir), "--modelzoo", "--lang", "zh"]) == 0
    assert capsys.readouterr().out.startswith("### 训练性能\n\n| 参数 | CPU |")
    target = tmp_path / "README_perf.md"
    assert report.main([str(run_dir), "--modelzoo", "--lang", "zh", "-o", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert target.read_text(encoding="utf-8").startswith("### 训练性能")
    assert report.main([str(run_dir), "--modelzoo", "-o", str(tmp_path / "no" / "dir" / "x.md")]) == 2
    assert "cannot write" in capsys.readouterr().err
    # without --modelzoo, --lang and -o are refused, and the report is the one it always was
    assert report.main([str(run_dir), "--lang", "zh"]) == 2
    assert "--lang and -o/--output go with --modelzoo" in capsys.readouterr().err
    assert report.main([str(run_dir), "--no-plot"]) == 0
    assert "wrn-launch report · run" in capsys.readouterr().out


def test_the_flag_offers_the_languages_of_the_tables():
    assert report.LANGS == LANGS  # report.py names them without importing the tables' module


def test_modelzoo_and_a_plot_file_exclude_each_other(run_dir, capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["report", str(run_dir), "--modelzoo", "--plot", "x.svg"])
    assert stop.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


BAD_LANG = st.text(min_size=0, max_size=12).filter(lambda s: s not in LANGS and not s.startswith("-"))


@settings(max_examples=40, deadline=None)
@given(lang=BAD_LANG)
def test_a_language_other_than_en_or_zh_is_a_usage_error(lang):
    parser = build_parser()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as stop:
        parser.parse_args(["report", "RUN", "--modelzoo", "--lang", lang])
    assert stop.value.code == 2
    message = err.getvalue()
    assert message.count("\n") == 1, message  # one line
    assert "argument --lang: invalid choice" in message and "'en'" in message and "'zh'" in message


PARTS = ("config", "classes", "checkpoints", "eval_json", "machine", "versions")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(present=st.fixed_dictionaries({p: st.booleans() for p in PARTS}), lang=st.sampled_from(LANGS),
       cut=st.integers(min_value=0, max_value=80), damage=st.sampled_from(["", "{", "[]", "null", "\x00"]))
def test_any_run_directory_gives_both_full_tables(present, lang, cut, damage):
    """Parts missing, metrics.jsonl cut short, a result file damaged: every field is still
    there, filled or unknown, and nothing raises."""
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp), **present)
        lines = (run / "metrics.jsonl").read_text().splitlines()
        (run / "metrics.jsonl").write_text("\n".join(lines[:cut]) + "\n")
        if damage:
            (run / "predict").mkdir()
            (run / "predict" / "20990101T000000Z.json").write_text(damage)
            if present["eval_json"]:
                (run / "eval.json").write_text(damage)
        train, infer = tables(run, lang)
        for table in (train, infer):
            for row in table.rows:
                value = row.cell(lang)
                assert value.strip() and (row.value is not None or value.startswith(UNKNOWN[lang]))
        text = markdown(train) + markdown(infer)
        assert all(f"| {r.label} | " in text for r in train.rows + infer.rows)


# -- the machines in run.json -----------------------------------------------------------------------
def test_host_info_from_proc_files(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD  EPYC 7B13\n\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC 7B13\n")
    assert cpu_model(cpuinfo) == "AMD EPYC 7B13"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 200.00\nCPU part\t: 0xd01\n")  # ARM: no model name
    assert cpu_model(cpuinfo) is None
    assert cpu_model(tmp_path / "missing") is None
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683792 kB\nMemFree:         1000 kB\n")
    assert memory_gib(meminfo) == round(24683792 / 1024 ** 2, 1) == 23.5
    meminfo.write_text("MemTotal: lots\n")
    assert memory_gib(meminfo) is None
    here = this_host()
    assert here["cores"] == os.cpu_count()
    assert here["memory_gib"] is None or here["memory_gib"] > 0


def test_machines_probe_only_the_launching_host_and_survive_run_json():
    nodes = [Node(host_name(), "127.0.0.1", (0, 1), (0, 1)), Node("far-away-host", "10.0.0.9", (0,), (0, 1, 2))]
    found = machines(nodes)
    assert found["far-away-host"] == {"usable_cores": 3}
    assert found[host_name()]["usable_cores"] == 2
    assert set(found[host_name()]) == {"usable_cores", "cpu", "cores", "memory_gib"}
    back = RunRecord.from_dict(json.loads(json.dumps(RunRecord(machines=found).to_dict())))
    assert back.machines == found
    assert "machines" not in RunRecord().to_dict()
    assert RunRecord.from_dict({"machines": {"a": 1, "b": {"cores": 2}}}).machines == {"b": {"cores": 2}}
    assert RunRecord.from_dict({"machines": [1, 2]}).machines == {}


def test_the_pure_functions_need_no_mindspore(run_dir):
    code = ("import sys\n"
            "from launcher.rundir.reading import load_run\n"
            "from launcher.rundir.artifacts import read_artifacts\n"
            "from launcher.ui.modelzoo import modelzoo_markdown\n"
            f"run = load_run({str(run_dir)!r})\n"
            "text = modelzoo_markdown(run, read_artifacts(run, count_parameters=True), 'zh')\n"
            "assert '参数(M)' in text\n"
            "print(sorted(m for m in ('mindspore', 'numpy') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # the start event had the count: no model was built
