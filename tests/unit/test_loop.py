"""The training loop's wiring (``wrn.loop``): when it calls its callbacks, and which events and
files the callbacks make of that, with a fake train step and fake batches (no MindSpore)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wrn import contract as events
from wrn.loop import (
    Callback,
    CheckpointSaver,
    Evaluator,
    LoopState,
    ProgressEvents,
    SummaryRecorder,
    choose_loop,
    run_loop,
    run_sink_loop,
)


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
    return [e for e in map(events.parse_record, text.splitlines()) if e]


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


# -- data sinking (Ascend) -------------------------------------------------------------------------
class Sinks:
    """``sink_epoch(epoch, skip)`` for ``run_sink_loop``: each sink trains the epoch's batches
    (epoch, index) in order, ``n`` per call, into ``trained``; records calls and closes."""

    def __init__(self, steps: int) -> None:
        self.steps, self.calls, self.sizes, self.closed, self.trained = steps, [], [], [], []

    def __call__(self, epoch: int, skip: int):
        self.calls.append((epoch, skip))
        batches = iter([(epoch, i) for i in range(skip, self.steps)])
        outer = self

        class Sink:
            def __call__(self, n):
                outer.sizes.append(n)
                for _ in range(n):
                    e, i = next(batches)
                    outer.trained.append((e, i))
                return Loss(e + i / 10)

            def close(self):
                outer.closed.append(epoch)

        return Sink()


def test_the_loop_choice():
    assert not choose_loop("CPU", 0, 10, 100).sinks  # the CPU loop stays per step
    assert not choose_loop("GPU", 8, 10, 100).sinks
    assert choose_loop("Ascend", 0, 10, 100).sink_size == 10  # events every log_interval steps
    assert choose_loop("Ascend", 25, 10, 100).sink_size == 25
    assert choose_loop("Ascend", 500, 10, 100).sink_size == 100  # at most an epoch
    assert choose_loop("Ascend", 0, 10, 3).sink_size == 3


def test_sink_loop_calls_hooks_at_sink_boundaries_and_closes_each_epoch():
    sinks, rec = Sinks(steps=7), Recorder()
    state = LoopState(rank=0, epochs=2, steps_per_epoch=7, callbacks=[rec])
    run_sink_loop(sinks, state, sink_size=3)
    assert sinks.sizes == [3, 3, 1, 3, 3, 1]  # the epoch's last call is shorter
    assert sinks.closed == [1, 2]
    assert sinks.trained == [(e, i) for e in (1, 2) for i in range(7)]  # every batch once
    assert [c[:4] for c in rec.calls if c[0] in ("step", "end")] == [
        ("step", 1, 3, 3), ("step", 1, 6, 6), ("step", 1, 7, 7), ("end", 1, 7, 7),
        ("step", 2, 3, 10), ("step", 2, 6, 13), ("step", 2, 7, 14), ("end", 2, 7, 14)]


def test_sink_loop_events_and_checkpoints_fall_on_sink_boundaries(tmp_path, capsys):
    """log_interval 2 and checkpoints every 3 steps, sinking 3 steps per call (epochs of 4):
    each fires at the first boundary at or after its multiple, naming the step reached."""
    state, evaluator, summary, log = _wire(tmp_path, rank=0)
    run_sink_loop(Sinks(steps=4), state, sink_size=3)
    got = _events(capsys.readouterr().out)
    assert [(e["event"], e["epoch"], e.get("step")) for e in got] == [
        ("step", 1, 3), ("checkpoint", 1, 3), ("step", 1, 4), ("epoch_end", 1, None),
        ("checkpoint", 1, 4), ("eval", 1, None),
        ("step", 2, 3), ("checkpoint", 2, 3), ("step", 2, 4), ("epoch_end", 2, None),
        ("checkpoint", 2, 4), ("eval", 2, None)]
    assert got[0]["global_step"] == 3 and got[0]["loss"] == 1.2
    assert got[3]["steps"] == 4 and got[3]["data_wait_s"] == 0
    assert [entry for entry in log if entry[0] == "write"] == [
        ("write", 1, 3, 3), ("write", 1, 4, 4), ("write", 2, 3, 7), ("write", 2, 4, 8)]


def test_sink_loop_resume_from_its_checkpoint_trains_the_same_batches():
    """Exact resume: stopped after a mid-epoch checkpoint written at a sink boundary, a new
    loop from that checkpoint's (epoch, step, global_step) trains exactly the batches the
    uninterrupted run trained after it."""
    whole = Sinks(steps=10)
    saved = []
    saver = CheckpointSaver(lambda e, s, g: saved.append((e, s, g)) or f"e{e}-s{s}.ckpt",
                            lambda: None, every_steps=4, every_epochs=1)
    run_sink_loop(whole, LoopState(0, 3, 10, callbacks=[saver]), sink_size=3)
    assert saved[:3] == [(1, 6, 6), (1, 9, 9), (1, 10, 10)]  # crossed 4 at 6, 8 at 9
    for epoch, step_, global_step in saved:
        if step_ == 10:
            continue
        again = Sinks(steps=10)
        state = LoopState(0, 3, 10, global_step=global_step)
        run_sink_loop(again, state, sink_size=3, start_epoch=epoch - 1, skip_steps=step_)
        done = whole.trained.index((epoch, step_ - 1)) + 1
        assert again.trained == whole.trained[done:]
        assert state.global_step == 30


def test_sink_size_must_be_positive():
    with pytest.raises(ValueError, match="sink_size must be 1 or more"):
        run_sink_loop(Sinks(3), LoopState(0, 1, 3), sink_size=0)
