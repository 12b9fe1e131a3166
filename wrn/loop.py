"""The training loop and the callbacks that do everything around it.

``run_loop`` only fetches batches and steps the optimizer; what a run reports and writes comes
from ``Callback`` objects it calls at fixed points, in list order: ``on_epoch_begin``,
``on_step_end``, ``on_epoch_end``, ``on_finish`` (after the last epoch), and ``on_event`` for
every event a callback reports through ``LoopState.report``.

``run_sink_loop`` is the same loop for data sinking (Ascend): the batches go to the device
queue and each call trains up to ``sink_size`` steps there (``mindspore.data_sink``), so
``on_step_end`` runs at sink boundaries only, with ``LoopState.last_steps`` the steps the call
covered. Callbacks that act "every N steps" act when a sink call crosses a multiple of N
(``crossed``), recording the step actually reached, so a checkpoint still names exactly the
batches trained on and a resume from it is exact. ``choose_loop`` says which loop a run uses.
The worker (``wrn.train``) wires:

* ``ProgressEvents``: ``step`` events every ``log_interval`` steps and ``epoch_end`` events;
* ``CheckpointSaver``: step and epoch checkpoints, then a ``checkpoint`` event;
* ``Evaluator``: evaluation every ``eval_interval`` epochs and once at the end (``eval.json``);
* ``SummaryRecorder``: the MindInsight summary of the events above (``wrn.summary``).

Their order in the list is the order of the events at an epoch's end (``epoch_end``, then
``checkpoint``, then ``eval``). The loop and the callbacks take what touches MindSpore (the
train step, a checkpoint writer, an evaluation) as callables: this module imports numpy only.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wrn.contract import Checkpoint, EpochEnd, Eval, Event, Step, emit
from wrn.fileio import write_json_atomic


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB (the pipeline's workers are threads)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class Callback:
    """Hooks ``run_loop`` calls; each does nothing unless a subclass overrides it."""

    def on_epoch_begin(self, state: LoopState) -> None:
        """The epoch's batches are ready (a resumed epoch: its first steps already skipped)."""

    def on_step_end(self, state: LoopState) -> None:
        """One optimizer step is done: ``state.step``, ``state.global_step``, ``state.loss``."""

    def on_epoch_end(self, state: LoopState) -> None:
        """The epoch's last batch has been trained on."""

    def on_finish(self, state: LoopState) -> None:
        """Every epoch is done (also when a resumed run had none left)."""

    def on_event(self, kind: str, fields: dict[str, Any]) -> None:
        """An event was just emitted through ``LoopState.report``."""


@dataclass
class LoopState:
    """What the loop shares with its callbacks. ``step`` counts the epoch's batches done,
    resumed ones included (``first_step`` of them were done before this process started);
    ``global_step`` is the LR-schedule position; ``data_wait`` is the seconds the last step
    waited for its batch; ``step_seconds`` the seconds of its train-step call (computation and
    the waits for other ranks inside it); ``loss`` is the last step's loss tensor;
    ``last_steps`` is how many steps the last ``on_step_end`` covers (1, or a sink call's
    steps)."""

    rank: int
    epochs: int
    steps_per_epoch: int
    global_step: int = 0
    epoch: int = 0
    first_step: int = 0
    step: int = 0
    loss: Any = None
    data_wait: float = 0.0
    step_seconds: float = 0.0
    callbacks: Sequence[Callback] = ()
    last_steps: int = 1

    @property
    def is_last_epoch(self) -> bool:
        """Whether ``epoch`` is the run's last one."""
        return self.epoch == self.epochs

    def report(self, event: Event) -> None:
        """Emit ``event`` (``wrn.contract``) and hand its kind and fields to every callback."""
        emit(event)
        for callback in self.callbacks:
            callback.on_event(event.kind, event.fields())

    def notify(self, hook: str) -> None:
        """Call ``hook`` (e.g. ``"on_step_end"``) on every callback, in order."""
        for callback in self.callbacks:
            getattr(callback, hook)(self)


def run_loop(step: Callable[[Any, Any], Any], batches: Callable[[int, int], Iterator],
             state: LoopState, start_epoch: int = 0, skip_steps: int = 0) -> LoopState:
    """Train epochs ``start_epoch + 1`` to ``state.epochs`` (1-based) and return the state.

    ``batches(epoch, skip)`` gives an iterator over the epoch's (images, labels) batches with
    its first ``skip`` left out (only the first epoch here skips, ``skip_steps``); ``step``
    runs one optimizer step on a batch and returns the loss. ``state.global_step`` must hold
    the position the run starts from.
    """
    for epoch in range(start_epoch + 1, state.epochs + 1):
        skip = skip_steps if epoch == start_epoch + 1 else 0
        it = batches(epoch, skip)
        state.epoch, state.first_step, state.step = epoch, skip, skip
        state.notify("on_epoch_begin")
        while True:
            t_fetch = time.time()
            try:
                images, labels = next(it)
            except StopIteration:
                break
            t_step = time.time()
            state.data_wait = t_step - t_fetch
            state.loss = step(images, labels)
            state.step_seconds = time.time() - t_step
            state.step += 1
            state.global_step += 1
            state.notify("on_step_end")
        state.notify("on_epoch_end")
    state.notify("on_finish")
    return state


def crossed(state: LoopState, every: int) -> bool:
    """Whether the steps since the last ``on_step_end`` reached a multiple of ``every`` (0:
    never); with one step per call, ``state.step % every == 0``."""
    return bool(every) and state.step // every > (state.step - state.last_steps) // every


@dataclass(frozen=True)
class LoopChoice:
    """How a run steps: one Python call per batch (``sink_size`` 0) or data sinking with
    ``sink_size`` steps per call at most."""

    sink_size: int = 0

    @property
    def sinks(self) -> bool:
        return self.sink_size > 0


def choose_loop(device_target: str, sink_size: int, log_interval: int,
                steps_per_epoch: int) -> LoopChoice:
    """Data sinking on Ascend, ``sink_size`` steps per call (0: ``log_interval``), never more
    than an epoch; the per-batch loop elsewhere (CPU: measured within 1.03x of Model.train,
    and ``mindspore.data_sink`` refuses CPU)."""
    if device_target != "Ascend":
        return LoopChoice()
    return LoopChoice(max(1, min(sink_size or log_interval, steps_per_epoch)))


def run_sink_loop(sink_epoch: Callable[[int, int], Any], state: LoopState, sink_size: int,
                  start_epoch: int = 0, skip_steps: int = 0) -> LoopState:
    """``run_loop`` with data sinking: ``sink_epoch(epoch, skip)`` gives the epoch's sink, a
    callable ``sink(n)`` that trains the next ``n`` batches on the device and returns the last
    loss, with ``close()`` to release its device queue. Each epoch runs in calls of
    ``sink_size`` steps (the last one shorter when the epoch's steps are not a multiple)."""
    if sink_size < 1:
        raise ValueError(f"sink_size must be 1 or more, got {sink_size}")
    for epoch in range(start_epoch + 1, state.epochs + 1):
        skip = skip_steps if epoch == start_epoch + 1 else 0
        sink = sink_epoch(epoch, skip)
        state.epoch, state.first_step, state.step = epoch, skip, skip
        state.data_wait = 0.0  # the device queue is fed in the background: not measured
        try:
            state.notify("on_epoch_begin")
            while state.step < state.steps_per_epoch:
                n = min(sink_size, state.steps_per_epoch - state.step)
                t_call = time.time()
                state.loss = sink(n)
                state.step_seconds = time.time() - t_call  # the call's n steps together
                state.step += n
                state.global_step += n
                state.last_steps = n
                state.notify("on_step_end")
        finally:
            sink.close()
        state.last_steps = 1
        state.notify("on_epoch_end")
    state.notify("on_finish")
    return state


class ProgressEvents(Callback):
    """``step`` events every ``log_interval`` steps (and at an epoch's last step, and after the
    process's first step) with the loss,
    the LR (``lr``: the per-step schedule), this rank's images per second and the mean data
    wait and train-step seconds (``step_s``) since the previous one; an ``epoch_end`` event
    with the epoch's mean loss, seconds, throughput, data wait and peak memory. With data
    sinking: at the first sink boundary at or after every ``log_interval``-th step, and the
    epoch's loss is the mean of the losses at its sink boundaries."""

    def __init__(self, batch_size: int, log_interval: int, lr: Sequence[float]) -> None:
        self.batch_size, self.log_interval, self.lr = batch_size, log_interval, lr
        self.stepped = False
        self._begin(time.time())

    def _begin(self, now: float) -> None:
        self.t_epoch = self.t_window = now
        self.wait = self.window_wait = self.window_step_s = 0.0
        self.window_steps = 0
        self.losses: list[Any] = []

    def on_epoch_begin(self, state: LoopState) -> None:
        self._begin(time.time())

    def on_step_end(self, state: LoopState) -> None:
        self.wait += state.data_wait
        self.window_wait += state.data_wait
        self.window_step_s += state.step_seconds
        self.window_steps += state.last_steps
        self.losses.append(state.loss)
        if not crossed(state, self.log_interval) and state.step != state.steps_per_epoch \
                and self.stepped:
            return  # (the process's first step is reported: start-up, compile included, is over)
        self.stepped = True
        now = time.time()
        state.report(Step(rank=state.rank, epoch=state.epoch, step=state.step, steps_per_epoch=state.steps_per_epoch,
                     global_step=state.global_step, loss=round(float(state.loss.asnumpy()), 6),
                     lr=float(self.lr[min(state.global_step - 1, len(self.lr) - 1)]),
                     imgs_per_s=round(self.window_steps * self.batch_size / max(now - self.t_window, 1e-9), 2),
                     data_wait_s=round(self.window_wait / max(self.window_steps, 1), 5),
                     step_s=round(self.window_step_s / max(self.window_steps, 1), 5)))
        self.t_window, self.window_wait, self.window_step_s, self.window_steps = now, 0.0, 0.0, 0

    def on_epoch_end(self, state: LoopState) -> None:
        seconds = time.time() - self.t_epoch
        done = state.step - state.first_step
        loss = float(np.mean([value.asnumpy() for value in self.losses])) if self.losses else float("nan")
        state.report(EpochEnd(rank=state.rank, epoch=state.epoch, loss=round(loss, 6), seconds=round(seconds, 3),
                     steps=done, imgs_per_s=round(done * self.batch_size / max(seconds, 1e-9), 2),
                     data_wait_s=round(self.wait / max(done, 1), 5), max_rss_mib=peak_rss_mib()))


class CheckpointSaver(Callback):
    """A checkpoint every ``every_steps`` steps within an epoch (0: none; never at its last
    step; with data sinking at the first sink boundary at or after each multiple) and after
    every ``every_epochs``-th and the last epoch. Every rank calls ``sync()``
    first (the BatchNorm average is a collective); rank 0 then calls ``write(epoch, step,
    global_step)``, which returns the file, and reports a ``checkpoint`` event."""

    def __init__(self, write: Callable[[int, int, int], Path], sync: Callable[[], None], *,
                 every_steps: int, every_epochs: int) -> None:
        self.write, self.sync = write, sync
        self.every_steps, self.every_epochs = every_steps, every_epochs

    def on_step_end(self, state: LoopState) -> None:
        if crossed(state, self.every_steps) and state.step != state.steps_per_epoch:
            self.save(state, state.step)

    def on_epoch_end(self, state: LoopState) -> None:
        if state.epoch % self.every_epochs == 0 or state.is_last_epoch:
            self.save(state, state.steps_per_epoch)

    last_saved: tuple[int, int] | None = None

    def save(self, state: LoopState, step: int) -> None:
        """Save the state after ``step`` of the current epoch."""
        self.last_saved = (state.epoch, step)
        self.sync()
        if state.rank != 0:
            return
        path = self.write(state.epoch, step, state.global_step)
        state.report(Checkpoint(rank=state.rank, epoch=state.epoch, step=step,
                                global_step=state.global_step, path=str(path)))


class Evaluator(Callback):
    """An evaluation after every ``interval``-th epoch (0: none; not after the last) and a
    final one when the loop ends, whose result is kept in ``final``. Every rank calls
    ``sync()`` and ``evaluate()`` (both collectives); rank 0 reports an ``eval`` event and
    writes the final result, without the per-rank ``local_*`` counts and with
    ``result_fields`` added, to ``result_path`` (JSON)."""

    def __init__(self, evaluate: Callable[[], dict[str, Any]], sync: Callable[[], None], *,
                 interval: int, result_path: Path, result_fields: dict[str, Any]) -> None:
        self.evaluate, self.sync, self.interval = evaluate, sync, interval
        self.result_path, self.result_fields = result_path, result_fields
        self.final: dict[str, Any] | None = None

    def on_epoch_end(self, state: LoopState) -> None:
        if self.interval and state.epoch % self.interval == 0 and not state.is_last_epoch:
            result = self._run(state.epoch)
            if state.rank == 0:
                state.report(Eval.of(state.rank, **result))

    def on_finish(self, state: LoopState) -> None:
        self.final = self._run(state.epochs)
        if state.rank == 0:
            state.report(Eval.of(state.rank, **self.final))
            write_json_atomic(self.result_path, {k: v for k, v in self.final.items()
                                                 if not k.startswith("local_")} | self.result_fields)

    def _run(self, epoch: int) -> dict[str, Any]:
        self.sync()  # the evaluated model is the same on every rank
        return self.evaluate() | {"epoch": epoch}


class SummaryRecorder(Callback):
    """Records the numbers of every reported event in a summary writer (``wrn.summary``'s
    ``SummaryLog`` or ``NullSummary``) and closes it when the loop ends."""

    def __init__(self, summary: Any) -> None:
        self.summary = summary

    def on_event(self, kind: str, fields: dict[str, Any]) -> None:
        self.summary.on_event(kind, **fields)

    def on_finish(self, state: LoopState) -> None:
        self.summary.close()


class Preempted(Exception):
    """Raised out of ``run_loop`` once a stop signal was honoured (checkpoint written)."""

    def __init__(self, epoch: int, step: int, global_step: int) -> None:
        super().__init__(f"stopped by a signal after epoch {epoch} step {step} (global step "
                         f"{global_step}); a step checkpoint was written")
        self.epoch, self.step, self.global_step = epoch, step, global_step


class StopOnSignal(Callback):
    """Preemption: after SIGTERM or SIGUSR1 (Slurm's scancel, requeue, preemption, or the
    ``--signal`` warning before a time limit) the current step finishes, every rank agrees to
    stop after the same step (``agree(flag)``: whether any rank has the flag, a collective
    called after every step), ``keep_local(epoch, step)`` keeps each rank's own BatchNorm
    statistics for that step (the checkpoint's are averaged over the ranks, which an
    uninterrupted run would not do there), a checkpoint of the step is written (``saver``)
    and ``Preempted`` ends the loop. At an epoch's last step the stop waits for the epoch's own
    checkpoint and evaluation, so the epoch ends as it would have. Must be the last callback."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, saver: CheckpointSaver, agree: Callable[[bool], bool],
                 keep_local: Callable[[int, int], None]) -> None:
        self.saver, self.agree, self.keep_local = saver, agree, keep_local
        self.requested: int | None = None
        self._at_epoch_end = False

    def install(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.requested = signum

    def on_step_end(self, state: LoopState) -> None:
        if not self.agree(self.requested is not None):
            return
        if state.step == state.steps_per_epoch:
            self._at_epoch_end = True  # stop once the epoch's checkpoint and eval are done
            return
        self._stop(state, state.step)

    def on_epoch_end(self, state: LoopState) -> None:
        if self._at_epoch_end:
            self._stop(state, state.steps_per_epoch)

    def _stop(self, state: LoopState, step: int) -> None:
        if self.saver.last_saved != (state.epoch, step):
            self.keep_local(state.epoch, step)
            self.saver.save(state, step)
        raise Preempted(state.epoch, step, state.global_step)
