"""``wrn-launch eval``: which checkpoint a run directory gives, and bad input (exit 2, one
paragraph, nothing started). The real evaluations are in tests/e2e/test_eval.py."""

import json
import os
import subprocess
import sys

import pytest

from launcher.rundir.checkpoints import CheckpointChoiceError, checkpoint_inputs, pick_checkpoint
from tests.support.processes import fake_env

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Three real checkpoint files of a small cell (epochs 2, 4, 6), written by wrn.checkpoint."""
    import mindspore as ms
    from mindspore import nn

    from wrn import checkpoint

    ms.set_device("CPU")  # as the mindspore_cpu_pynative fixture (function-scoped) does
    ms.set_context(mode=ms.PYNATIVE_MODE)
    folder = tmp_path_factory.mktemp("ckpts")
    cell = nn.Dense(3, 2)
    for epoch in (2, 4, 6):
        checkpoint.save(cell, folder, "m", {"epoch": epoch, "step": 5, "global_step": 5 * epoch,
                                            "world_size": 1, "seed": 1, "steps_per_epoch": 5})
    return sorted(folder.glob("*.ckpt"))


def _run(tmp_path, saved, evals=(), checkpoints=(2, 4, 6), config=True, classes=True):
    """A run directory holding the saved checkpoints and metrics.jsonl with these events."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    paths = {}
    for src in saved:
        epoch = int(src.name.split("-e")[1][:4])
        if epoch in checkpoints:
            paths[epoch] = run / "checkpoints" / src.name
            paths[epoch].write_bytes(src.read_bytes())
    lines = [{"v": 1, "event": "checkpoint", "rank": 0, "time": 1.0, "epoch": e, "step": 5,
              "path": str(run / "checkpoints" / s.name)} for e, s in zip((2, 4, 6), saved)]
    lines += [{"v": 1, "event": "eval", "rank": 0, "time": 2.0, "epoch": e, "top1": t} for e, t in evals]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if config:
        (run / "config.yaml").write_text("model: wrn10_2\n")
    if classes:
        (run / "classes.json").write_text('["a", "b"]')
    return run, paths


def test_best_evaluated_checkpoint_is_taken(tmp_path, saved):
    run, paths = _run(tmp_path, saved, evals=[(2, 0.5), (4, 0.8), (6, 0.7)])
    ckpt, why = pick_checkpoint(run)
    assert ckpt == paths[4].resolve() and why == "best evaluated: top-1 80.00% after epoch 4"


def test_ties_go_to_the_later_epoch_and_removed_files_are_not_chosen(tmp_path, saved):
    run, paths = _run(tmp_path, saved, evals=[(2, 0.9), (4, 0.8), (6, 0.8)], checkpoints=(4, 6))
    assert pick_checkpoint(run)[0] == paths[6].resolve()  # epoch 2 scored best but was pruned


def test_without_evaluations_the_newest_is_taken(tmp_path, saved):
    run, paths = _run(tmp_path, saved)
    ckpt, why = pick_checkpoint(run)
    assert ckpt == paths[6].resolve() and why.startswith("newest complete checkpoint")


def test_a_cut_short_checkpoint_is_passed_over(tmp_path, saved):
    run, paths = _run(tmp_path, saved, evals=[(6, 0.9), (4, 0.5)])
    data = paths[6].read_bytes()
    paths[6].chmod(0o600)
    paths[6].write_bytes(data[:len(data) // 2])
    ckpt, why = pick_checkpoint(run)
    assert ckpt == paths[4].resolve() and "1 incomplete file(s) passed over" in why


def test_a_checkpoint_file_finds_its_run_files(tmp_path, saved):
    run, paths = _run(tmp_path, saved)
    inputs = checkpoint_inputs(str(paths[2]))
    assert (inputs.checkpoint, inputs.config, inputs.classes, inputs.run_dir, inputs.why) == (
        paths[2].resolve(), run / "config.yaml", run / "classes.json", run, "given")


def test_a_run_without_classes_json_uses_the_data_folders(tmp_path, saved):
    run, _ = _run(tmp_path, saved, classes=False)
    assert checkpoint_inputs(str(run)).classes is None


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such checkpoint file or run directory"),
    ("not-ckpt", "not a checkpoint (.ckpt) or a run directory"),
    ("not-run", "not a run directory"),
    ("empty-run", "the run has no checkpoints"),
    ("no-config", "has no config.yaml"),
    ("bad-config-flag", "--config"),
    ("truncated", "not a complete checkpoint"),
])
def test_bad_targets_say_what_to_pass(tmp_path, saved, case, expected):
    run, paths = _run(tmp_path, saved, config=case != "no-config")
    target, config = str(paths[2]), None
    if case == "missing":
        target = str(tmp_path / "nope.ckpt")
    elif case == "not-ckpt":
        target = str(run / "config.yaml")
    elif case == "not-run":
        (tmp_path / "other").mkdir()
        target = str(tmp_path / "other")
    elif case == "empty-run":
        for p in paths.values():
            p.unlink()
        target = str(run)
    elif case == "bad-config-flag":
        config = str(tmp_path / "none.yaml")
    elif case == "truncated":
        paths[2].chmod(0o600)
        paths[2].write_bytes(paths[2].read_bytes()[:100])
    with pytest.raises(CheckpointChoiceError) as info:
        checkpoint_inputs(target, config)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("args, expected", [
    ([], "the following arguments are required: CKPT_OR_RUN_DIR"),
    (["nowhere"], "nowhere: no such checkpoint file or run directory"),
    (["RUN", "--resume", "x"], "unrecognized arguments: --resume"),
    (["RUN", "--devices", "2", "--hosts", "a:1"], "drop --devices"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, saved, args, expected):
    run, _ = _run(tmp_path, saved)
    argv = [str(run) if a == "RUN" else a for a in args]
    res = subprocess.run([sys.executable, "-m", "launcher.cli", "eval", *argv], cwd=tmp_path,
                         env=fake_env() | {"PYTHONPATH": REPO}, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert expected in res.stderr
    assert "Traceback" not in res.stderr and not (run / "eval").exists()
