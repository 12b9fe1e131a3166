"""The training loop's wiring (``wrn.loop``): when it calls its callbacks, and which events and
files the callbacks make of that, with a fake train step and fake batches (no MindSpore)."""

from __future__ import annotations

import json

import numpy as np

from wrn import events
from wrn.loop import (Callback, CheckpointSaver, Evaluator, LoopState, ProgressEvents, SummaryRecorder,
                      run_loop)


class Loss:
    """Stands in for a MindSpore loss tensor."""

    def __init__(self, value: float) -> None:
        self.value = np.float32(value)

    def asnumpy(self):
        return self.value


class Batches:
    """``batches(epoch, skip)`` for the loop: records each call, yields (epoch, index) pairs."""

    def __init__(self, steps: int) -> None:
        self.steps, self.calls = steps, []

    def __call__(self, epoch: int, skip: int):
        self.calls.append((epoch, skip))
        return iter([((epoch, i), i) for i in range(skip, self.steps)])


def step(images, labels) -> Loss:
    epoch, index = images
    return Loss(epoch + index / 10)


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls = []

    def on_epoch_begin(self, state):
        self.calls.append(("begin", state.epoch, state.step, state.global_step))

    def on_step_end(self, state):
        self.calls.append(("step", state.epoch, state.step, state.global_step, float(state.loss.asnumpy())))

    def on_epoch_end(self, state):
        self.calls.append(("end", state.epoch, state.step, state.global_step))

    def on_finish(self, state):
        self.calls.append(("finish", state.epoch, state.global_step))

    def on_event(self, kind, fields):
        self.calls.append(("event", kind))


def test_loop_resumes_mid_epoch_and_calls_hooks_in_order():
    batches, rec = Batches(steps=3), Recorder()
    state = LoopState(rank=0, epochs=3, steps_per_epoch=3, global_step=5, callbacks=[rec])
    run_loop(step, batches, state, start_epoch=1, skip_steps=2)
    assert batches.calls == [(2, 2), (3, 0)]  # only the first epoch skips
    assert rec.calls == [
        ("begin", 2, 2, 5), ("step", 2, 3, 6, np.float32(2.2)), ("end", 2, 3, 6),
        ("begin", 3, 0, 6), ("step", 3, 1, 7, 3.0), ("step", 3, 2, 8, np.float32(3.1)),
        ("step", 3, 3, 9, np.float32(3.2)), ("end", 3, 3, 9),
        ("finish", 3, 9),
    ]
    assert state.first_step == 0
    assert state.is_last_epoch


def test_a_run_with_no_epoch_left_only_finishes():
    batches, rec = Batches(steps=3), Recorder()
    run_loop(step, batches, LoopState(0, 2, 3, global_step=6, callbacks=[rec]), start_epoch=2)
    assert batches.calls == []
    assert rec.calls == [("finish", 0, 6)]


class FakeSummary:
    def __init__(self) -> None:
        self.records, self.closed = [], False

    def on_event(self, kind, **fields):
        assert not self.closed
        self.records.append((kind, fields.get("epoch"), fields.get("step")))

    def close(self):
        self.closed = True


def _wire(tmp_path, rank):
    """The callbacks as the worker wires them, with fakes for what MindSpore does."""
    log = []

    def write(epoch, step_, global_step):
        log.append(("write", epoch, step_, global_step))
        return tmp_path / f"e{epoch}-s{step_}.ckpt"

    def evaluate():
        log.append(("evaluate",))
        return {"top1": 0.75, "correct": 3, "total": 4, "loss": 0.5, "local_correct": 3, "local_total": 4}

    summary = FakeSummary()
    evaluator = Evaluator(evaluate, lambda: log.append(("sync",)), interval=1,
                          result_path=tmp_path / "eval.json", result_fields={"split": "test", "world_size": 2})
    callbacks = [ProgressEvents(batch_size=8, log_interval=2, lr=np.linspace(0.1, 0.8, 8, dtype=np.float32)),
                 CheckpointSaver(write, lambda: log.append(("sync",)), every_steps=3, every_epochs=1),
                 evaluator, SummaryRecorder(summary)]
    return LoopState(rank, epochs=2, steps_per_epoch=4, callbacks=callbacks), evaluator, summary, log


def _events(text):
    return [e for e in map(events.parse, text.splitlines()) if e]


def test_callbacks_make_the_workers_events_in_order(tmp_path, capsys):
    state, evaluator, summary, log = _wire(tmp_path, rank=0)
    run_loop(step, Batches(steps=4), state)
    got = _events(capsys.readouterr().out)
    assert [(e["event"], e["epoch"], e.get("step")) for e in got] == [
        ("step", 1, 1),  # the process's first step: its start-up is over
        ("step", 1, 2), ("checkpoint", 1, 3), ("step", 1, 4), ("epoch_end", 1, None),
        ("checkpoint", 1, 4), ("eval", 1, None),
        ("step", 2, 2), ("checkpoint", 2, 3), ("step", 2, 4), ("epoch_end", 2, None),
        ("checkpoint", 2, 4), ("eval", 2, None),  # the final evaluation, not an interval one
    ]
    got = got[1:]
    step4 = got[2]
    assert list(step4)[4:] == ["epoch", "step", "steps_per_epoch", "global_step", "loss", "lr",
                               "imgs_per_s", "data_wait_s", "step_s"]
    assert step4["loss"] == 1.3
    assert step4["global_step"] == 4
    assert step4["lr"] == np.float32(0.4)
    epoch_end = got[3]
    assert list(epoch_end)[4:] == ["epoch", "loss", "seconds", "steps", "imgs_per_s", "data_wait_s",
                                   "max_rss_mib"]
    assert epoch_end["steps"] == 4 and epoch_end["loss"] == round(float(np.mean(
        [np.float32(1 + i / 10) for i in range(4)])), 6)
    assert got[1]["path"] == str(tmp_path / "e1-s3.ckpt")
    assert got[1]["global_step"] == 3
    assert [entry for entry in log if entry[0] == "write"] == [
        ("write", 1, 3, 3), ("write", 1, 4, 4), ("write", 2, 3, 7), ("write", 2, 4, 8)]
    assert evaluator.final["epoch"] == 2
    assert json.loads((tmp_path / "eval.json").read_text()) == {
        "top1": 0.75, "correct": 3, "total": 4, "loss": 0.5, "epoch": 2, "split": "test", "world_size": 2}
    assert summary.closed
    assert summary.records[1:] == [(e["event"], e["epoch"], e.get("step")) for e in got]


def test_other_ranks_join_the_collectives_but_report_nothing_else(tmp_path, capsys):
    state, evaluator, summary, log = _wire(tmp_path, rank=1)
    run_loop(step, Batches(steps=4), state)
    got = _events(capsys.readouterr().out)
    assert {e["event"] for e in got} == {"step", "epoch_end"}
    assert all(e["rank"] == 1 for e in got)
    # every rank syncs before each checkpoint (4) and evaluation (2) and evaluates (2)
    assert log.count(("sync",)) == 6
    assert log.count(("evaluate",)) == 2
    assert not any(entry[0] == "write" for entry in log)
    assert evaluator.final["top1"] == 0.75
    assert not (tmp_path / "eval.json").exists()
