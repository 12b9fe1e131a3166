"""``wrn.loop.StopOnSignal``: a stop signal ends the loop after the current step with one
checkpoint of that step (each rank's own BN statistics kept first), or after the epoch's own
checkpoint when it comes at an epoch's last step."""

from __future__ import annotations

import signal

import pytest

from wrn.loop import CheckpointSaver, LoopState, Preempted, StopOnSignal, run_loop


def _loop(signal_at: tuple[int, int], every_steps: int = 0):
    saved, kept = [], []
    saver = CheckpointSaver(lambda e, s, g: saved.append((e, s, g)) or "ckpt", lambda: None,
                            every_steps=every_steps, every_epochs=1)
    stopper = StopOnSignal(saver, bool, lambda e, s: kept.append((e, s)))
    state = LoopState(0, 3, 4, callbacks=[saver, stopper])

    def step(images, labels):
        if (state.epoch, state.step + 1) == signal_at:
            stopper._on_signal(signal.SIGTERM, None)
        return 0.0

    with pytest.raises(Preempted) as stop:
        run_loop(step, lambda epoch, skip: iter([(None, None)] * (4 - skip)), state)
    return stop.value, saved, kept


def test_a_signal_mid_epoch_stops_after_that_step_with_its_checkpoint(capsys):
    stop, saved, kept = _loop((2, 2))
    assert (stop.epoch, stop.step, stop.global_step) == (2, 2, 6)
    assert saved == [(1, 4, 4), (2, 2, 6)] and kept == [(2, 2)]


def test_a_signal_at_the_last_step_lets_the_epoch_end_as_usual(capsys):
    stop, saved, kept = _loop((2, 4))
    assert (stop.epoch, stop.step) == (2, 4)
    assert saved == [(1, 4, 4), (2, 4, 8)] and kept == []  # the epoch's own checkpoint


def test_no_second_checkpoint_when_one_was_just_written(capsys):
    stop, saved, kept = _loop((1, 2), every_steps=2)
    assert saved == [(1, 2, 2)] and kept == [] and stop.step == 2
