"""The training worker: ``python -m wrn.train --config FILE [--output-dir DIR] [--set k=v ...]``.

One process per device. It reads its place in the job from the environment (see
``wrn.dist``), so it runs the same under ``wrn-launch``, under ``msrun`` and standalone.
It trains data-parallel (gradients averaged over ranks), evaluates exactly (each rank scores
its own disjoint shard, counts are summed), lets rank 0 write checkpoints atomically, and
reports progress as events (``wrn.contract``) on stdout. Exit code 0 on success, 2 on bad
input, 1 on any other error (an ``error`` event says why).

A run is ``setup`` (inputs checked, the job joined, data, model, optimizer), ``resume`` (the
checkpoint and the start point), then ``wrn.loop.run_loop`` with callbacks for the progress
events, checkpoints, evaluation and the MindInsight summary; ``train`` wires them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wrn import faults, stacks
from wrn.config import ConfigError, TrainConfig, load_config, split_modelzoo_args
from wrn.contract import STANDBY_ENV, STOP_ON_SIGNAL_ENV, Error, Finish, StandbyReady, Start, WarningEvent, emit
from wrn.dist import (
    WorldInfo,
    prepare_process_env,
    resolve_device_target,
    setup_mindspore,
    thread_budget,
    world_from_env,
)
from wrn.hostname import host_name
from wrn.loop import (
    CheckpointSaver,
    Evaluator,
    LoopState,
    Preempted,
    ProgressEvents,
    StopOnSignal,
    SummaryRecorder,
    choose_loop,
    peak_rss_mib,
    run_loop,
    run_sink_loop,
)


def build_arg_parser(prog: str = "python -m wrn.train") -> argparse.ArgumentParser:
    """Command-line flags of the worker (config keys come as --set k=v or --key=value)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="YAML config (default: the bundled default.yaml)")
    parser.add_argument("--output-dir", default=None,
                        help="where checkpoints/, classes.json and eval.json go (default: ckpt_path)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key; repeatable")
    parser.add_argument("--resume-ckpt", default=None, help="continue exactly from this "
                        "checkpoint (weights, optimizer state, LR position, epoch/step)")
    parser.add_argument("--resume-from", default=None, metavar="DIR", help="continue from the "
                        "newest checkpoint in DIR that verifies (none there: start from scratch)")
    parser.add_argument("--pretrained", default=None, metavar="CKPT", help="initialise weights "
                        "from CKPT (transfer learning; the classifier is dropped when the class "
                        "count differs)")
    parser.add_argument("--force", action="store_true", help="resume even if the checkpoint's "
                        "config differs in fields that change the maths")
    parser.add_argument("--rescan", default=None, metavar="TOKEN", help="scan the data again "
                        "instead of reusing the run's data index, once per TOKEN (any text, the "
                        "same on every rank of a launch)")
    return parser


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    """Parse flags and load the config; raises ConfigError on any bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    zoo, rest = split_modelzoo_args(argv)
    parser = build_arg_parser()
    try:
        args = parser.parse_args(rest)
    except SystemExit as exc:
        if exc.code in (0, None):  # --help
            raise
        # argparse already printed its one-paragraph usage error
        raise ConfigError("invalid command line (see the usage above)") from exc
    return args, load_config(args.config, zoo + list(args.overrides))


# --------------------------------------------------------------------------------------
# the run


@dataclass(frozen=True)
class StartPoint:
    """Where training (re)starts: ``epochs_done`` whole epochs, then ``skip_steps`` batches of
    the next epoch already done; ``global_step`` = the LR-schedule position."""

    epochs_done: int = 0
    skip_steps: int = 0
    global_step: int = 0
    source: str | None = None
    note: str | None = None


def start_point(meta: dict[str, Any], steps_per_epoch: int, world: int, source: str) -> StartPoint:
    """Translate a checkpoint's (epoch, step, world_size) into this run's start point.

    Same world size: exactly where it stopped. Another world size: the epoch's data order is
    recomputed for the new number of ranks; mid-epoch, the batches already seen by the old
    ranks (step x batch x old world samples) become whole batches of the new ranks, rounded down.
    """
    epoch, step = int(meta.get("epoch", 0)), int(meta.get("step", 0))
    old_world = int(meta.get("world_size", world))
    old_spe = int(meta.get("steps_per_epoch", steps_per_epoch))
    note = None
    if step >= old_spe:
        done, skip = epoch, 0
    else:
        done, skip = epoch - 1, step
    if old_world != world:
        if skip:
            skip = min(steps_per_epoch - 1, skip * old_world // world)
        note = (f"checkpoint was written by {old_world} rank(s), this run has {world}: the data "
                f"order is recomputed for {world} rank(s) ({steps_per_epoch} steps per epoch)")
    return StartPoint(done, skip, done * steps_per_epoch + skip, source, note)


def find_resume_checkpoint(directory: Path, cell, rank: int) -> tuple[dict[str, Any], Path] | None:
    """Load the newest checkpoint in ``directory`` that verifies into ``cell``.

    A truncated or corrupt checkpoint is skipped with a warning naming it (never loaded);
    returns None when the directory holds no checkpoint at all, raises ConfigError when none
    of those present verifies.
    """
    from wrn import checkpoint

    candidates = list(reversed(checkpoint.list_checkpoints(directory)))
    if not candidates:
        return None
    problems = []
    for path in candidates:
        try:
            return checkpoint.load(path, cell), path
        except ValueError as exc:
            problems.append(str(exc))
            if rank == 0:
                emit(WarningEvent.of(rank, message=f"skipping checkpoint {path.name}: {exc}",
                            checkpoint=str(path)))
    raise ConfigError(f"no checkpoint in {directory} verifies ({'; '.join(problems)}); "
                      f"start a new run or pass an intact file with --resume-ckpt")


class EpochSink:
    """One epoch's pipeline sunk to the device (``mindspore.data_sink``): ``sink(n)`` trains the
    next ``n`` batches from the device queue and returns the last loss; ``close()`` ends the
    queue (its pipeline runs ahead into batches no step will take).

    The sink function is made with ``sink_size=1`` and called ``n`` times: without a
    ``jit_config`` that is what ``data_sink(..., sink_size=n)`` does inside, and one sink per
    dataset is all MindSpore allows, while an epoch's last call may need fewer steps. The
    skipped batches of a resumed epoch are replayed inside the pipeline (``set_init_step``),
    which the device queue honours as an iterator does, so the resume stays exact."""

    def __init__(self, step_cell: Any, dataset: Any) -> None:
        import mindspore as ms

        self.dataset = dataset
        self._step = ms.data_sink(step_cell, dataset, sink_size=1)

    def __call__(self, steps: int) -> Any:
        loss = None
        for _ in range(steps):
            loss = self._step()
        return loss

    def close(self) -> None:
        transfer = getattr(self.dataset, "__transfer_dataset__", None)
        if transfer is not None:
            transfer.release()


@dataclass
class Setup:
    """What ``setup`` builds once per process: this rank's place in the job, the data, the
    model and its optimizer. ``step_cell`` is the train step (network + loss + optimizer),
    ``lr`` the per-step LR schedule, ``eval_ds`` this rank's evaluation pipeline."""

    cfg: TrainConfig
    output_dir: Path
    rank: int
    world: int
    device_target: str
    threads: int | None
    num_workers: int
    classes: list[str]
    train_split: Any
    test_split: Any
    steps_per_epoch: int
    net: Any
    lr: Any
    amp: str
    optimizer: Any
    step_cell: Any
    eval_ds: Any
    config_hash: str
    # built at the first evaluation / BatchNorm sync and reused (their graphs compile once)
    _exact_eval: Any = field(default=None, init=False, repr=False)
    _bn_sum: Any = field(default=None, init=False, repr=False)

    def train_batches(self, epoch: int, skip: int) -> Iterator:
        """A fresh pipeline for ``epoch`` (1-based), its first ``skip`` batches dropped inside
        it after augmentation, so the crops of the rest are those of an uninterrupted epoch."""
        from wrn.pipeline import train_dataset

        dataset, _ = train_dataset(self.train_split, rank=self.rank, world=self.world,
                                   batch_size=self.cfg.batch_size, image_size=self.cfg.image_size,
                                   seed=self.cfg.seed, num_workers=self.num_workers,
                                   crop_min_scale=self.cfg.crop_min_scale, start_epoch=epoch - 1,
                                   skip_steps=skip, replay_skipped=True)
        return iter(dataset.create_tuple_iterator(num_epochs=1))

    def sink_epoch(self, epoch: int, skip: int) -> EpochSink:
        """``train_batches`` for data sinking: the same pipeline on the device queue."""
        from wrn.pipeline import train_dataset

        dataset, _ = train_dataset(self.train_split, rank=self.rank, world=self.world,
                                   batch_size=self.cfg.batch_size, image_size=self.cfg.image_size,
                                   seed=self.cfg.seed, num_workers=self.num_workers,
                                   crop_min_scale=self.cfg.crop_min_scale, start_epoch=epoch - 1,
                                   skip_steps=skip, replay_skipped=True)
        return EpochSink(self.step_cell, dataset)

    def sync_batchnorm(self) -> None:
        """Average the BatchNorm statistics over the ranks (a collective: every rank calls it)."""
        from wrn.steps import AllReduceSum, sync_batchnorm_stats

        if self.world > 1 and self._bn_sum is None:
            self._bn_sum = AllReduceSum()  # built once: a new cell compiles again every epoch
        sync_batchnorm_stats(self.net, self.world, self._bn_sum)

    def evaluate(self) -> dict[str, Any]:
        """Score the test split over all ranks (a collective)."""
        from wrn.steps import ExactEval

        if self._exact_eval is None:
            self._exact_eval = ExactEval(self.net, self.world)  # its graph compiles once
        return self._exact_eval(self.eval_ds)

    def local_bn_path(self, epoch: int, step: int) -> Path:
        """Where this rank keeps its own BatchNorm statistics of a preemption checkpoint."""
        return self.output_dir / "checkpoints" / \
            f".bn-local-{self.cfg.checkpoint_name}-e{epoch:04d}-s{step:06d}-rank{self.rank}.npy"

    def keep_local_bn_stats(self, epoch: int, step: int) -> None:
        """Before a preemption checkpoint averages them: keep this rank's BN statistics, so
        that the resumed run continues with exactly the state an uninterrupted one has."""
        from wrn.fileio import write_atomic
        from wrn.steps import local_bn_stats

        path = self.local_bn_path(epoch, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, local_bn_stats(self.net), fsync=True)

    def save_checkpoint(self, epoch: int, step: int, global_step: int) -> Path:
        """Write the train step's state after ``step`` of ``epoch``; return the file."""
        from wrn import checkpoint

        cfg = self.cfg
        meta = {"epoch": epoch, "step": step, "global_step": global_step, "world_size": self.world,
                "seed": cfg.seed, "steps_per_epoch": self.steps_per_epoch,
                "config_hash": self.config_hash, "model": cfg.model}
        return checkpoint.save(self.step_cell, self.output_dir / "checkpoints", cfg.checkpoint_name,
                               meta, keep=cfg.keep_checkpoint_max)


def setup(cfg: TrainConfig, output_dir: Path, info: WorldInfo, resume_ckpt: str | None = None,
          pretrained: str | None = None, rescan: str | None = None) -> Setup:
    """Check the inputs, join the job, then build the data, the model and its optimizer.

    Every check that can fail on the user's input (the data folder, the class count, the files
    named on the command line) runs before MindSpore joins the cluster. The data is scanned
    once per run (``wrn.dataindex``): the rank that wins the index lock (taken before joining)
    starts the scan on helper processes (every core the host's ranks were given) and joins
    while they work; the others wait for the index after joining; ``rescan`` forces a new scan. Rank 0 writes
    ``classes.json`` and warns about skipped image files and a ``pretrained`` initialisation.
    """
    from wrn import dataindex, shards
    from wrn.checkpoint import config_hash
    from wrn.datapath import resolve_data_path
    from wrn.pipeline import eval_dataset

    device_target = resolve_device_target(cfg.device_target)
    root = resolve_data_path(cfg.data_path)
    scan = dataindex.ScanOnce(root, output_dir / dataindex.INDEX_DIR, verify=cfg.verify_images,
                              rescan=rescan, log=lambda msg: print(f"data: {msg}", flush=True))
    classes = list(scan.classes)
    if len(classes) != cfg.num_classes:
        raise ConfigError(f"data_path {root}: train/ has {len(classes)} class folders but "
                          f"num_classes is {cfg.num_classes}; set num_classes: {len(classes)} "
                          f"in the config or pass --set num_classes={len(classes)}")
    for flag, path in (("--resume-ckpt", resume_ckpt), ("--pretrained", pretrained)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{flag} {path}: no such checkpoint file")
    builder = scan.claim()
    if builder:  # list and verify on helper processes while this rank loads MindSpore and joins
        scan.start()
    try:
        info = setup_mindspore(device_target, cfg.mode, cfg.seed, info)
    except BaseException:
        scan.abandon()
        raise
    rank, world = max(info.rank, 0), info.world_size
    threads = thread_budget()
    num_workers = max(1, min(cfg.num_parallel_workers, threads or os.cpu_count() or 1))
    index = scan.build() if builder else scan.wait()
    train_split, test_split = _use_index(index, classes, rank, output_dir)
    steps_per_epoch = shards.steps_per_epoch(len(train_split.files), world, cfg.batch_size)
    net, lr, amp, optimizer, step_cell = _build_model(cfg, device_target, steps_per_epoch, rank,
                                                      pretrained)
    eval_ds, _ = eval_dataset(test_split, rank=rank, world=world, batch_size=cfg.batch_size,
                              image_size=cfg.image_size, num_workers=num_workers)
    return Setup(cfg=cfg, output_dir=output_dir, rank=rank, world=world, device_target=device_target,
                 threads=threads, num_workers=num_workers, classes=classes, train_split=train_split,
                 test_split=test_split, steps_per_epoch=steps_per_epoch, net=net, lr=lr, amp=amp,
                 optimizer=optimizer, step_cell=step_cell, eval_ds=eval_ds,
                 config_hash=config_hash(cfg.to_dict()))


def _use_index(index, classes: list[str], rank: int, output_dir: Path):
    """The train and test splits of the data index; rank 0 writes ``classes.json`` and warns
    about skipped files."""
    from wrn.classindex import save_class_index

    train_split, test_split = index.train, index.test
    if rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_class_index(classes, output_dir / "classes.json")
        skipped = list(train_split.skipped) + list(test_split.skipped)
        if skipped:
            emit(WarningEvent.of(rank, message=f"skipped {len(skipped)} unreadable image file(s)",
                        skipped_files=len(skipped),
                        examples=[f"{p}: {why}" for p, why in skipped[:5]]))
    return train_split, test_split


def _build_model(cfg: TrainConfig, device_target: str, steps_per_epoch: int, rank: int,
                 pretrained: str | None):
    """(net, LR schedule, AMP level, optimizer, train step) for ``cfg``; ``pretrained``
    initialises the network's weights (rank 0 says what was and was not loaded)."""
    from wrn import checkpoint
    from wrn.lr import lr_schedule
    from wrn.models import build_model
    from wrn.steps import amp_level_for, make_loss, make_optimizer, make_train_step

    net = build_model(cfg.model, cfg.num_classes, cfg.image_size, cfg.dropout)
    if pretrained:
        try:
            dropped = checkpoint.load_pretrained(pretrained, net)
        except ValueError as exc:  # another model, or an unreadable file: the user's input
            raise ConfigError(str(exc)) from None
        if rank == 0:
            emit(WarningEvent.of(rank, message=f"initialised from {pretrained}"
                        + (f"; classifier head not loaded ({', '.join(dropped)}: class count "
                           f"differs) and trained from scratch" if dropped else ""),
                        pretrained=pretrained, dropped=dropped))
    lr = lr_schedule(cfg.lr_schedule, cfg.lr, steps_per_epoch, cfg.epoch_size,
                     warmup_epochs=cfg.warmup_epochs, lr_end=cfg.lr_end,
                     decay_epochs=cfg.lr_decay_epochs, decay_factor=cfg.lr_decay_factor)
    amp = amp_level_for(cfg, device_target)
    optimizer = make_optimizer(net, cfg, lr, loss_scale=cfg.loss_scale if amp != "O0" else 1.0)
    step_cell = make_train_step(net, make_loss(cfg.label_smoothing), optimizer, amp, cfg.loss_scale)
    return net, lr, amp, optimizer, step_cell


def resume(run: Setup, resume_ckpt: str | None = None, resume_from: str | None = None,
           force: bool = False) -> StartPoint:
    """Load the checkpoint to continue from into the train step; return where to start.

    ``resume_ckpt``: this file (fails if it does not verify). ``resume_from``: the newest
    checkpoint in this folder that verifies (none there: start from scratch). A checkpoint
    whose maths-relevant config differs is refused unless ``force``. The optimizer's step
    counter is set to the start point's LR-schedule position.
    """
    import mindspore as ms
    import numpy as np

    from wrn import checkpoint

    found = None
    if resume_ckpt:
        found = checkpoint.load(resume_ckpt, run.step_cell), Path(resume_ckpt)
    elif resume_from:
        found = find_resume_checkpoint(Path(resume_from), run.step_cell, run.rank)
    if not found:
        return StartPoint()
    meta, path = found
    if meta.get("config_hash") not in (None, run.config_hash) and not force:
        raise ConfigError(f"checkpoint {path} was written with a different config (fields that "
                          f"change the maths: {', '.join(checkpoint.MATH_FIELDS)}); resume with "
                          f"the run's own config.yaml, or add --force to continue anyway")
    start = start_point(meta, run.steps_per_epoch, run.world, str(path))
    _restore_local_bn_stats(run, meta)
    run.optimizer.global_step.set_data(ms.Tensor(np.array([start.global_step], np.int32)))
    if start.note and run.rank == 0:
        emit(WarningEvent.of(run.rank, message=start.note))
    return start


def _restore_local_bn_stats(run: Setup, meta: dict[str, Any]) -> None:
    """After loading a preemption checkpoint of the same world size: this rank's own BatchNorm
    statistics of that step (``Setup.keep_local_bn_stats``), if it kept them."""
    from wrn.steps import restore_bn_stats

    if int(meta.get("world_size", 0) or 0) != run.world:
        return
    try:
        path = run.local_bn_path(int(meta.get("epoch", 0)), int(meta.get("step", 0)))
        data = path.read_bytes()
    except (OSError, ValueError, TypeError):
        return
    if not restore_bn_stats(run.net, data):
        emit(WarningEvent.of(run.rank, message=f"{path.name} does not fit the network; the "
                                                  f"checkpoint's averaged statistics are used"))


#: The line a standby worker waits for on stdin before it resumes and trains.
GO_LINE = "go"


def wait_as_standby(rank: int, setup_seconds: float, stream: Any = None) -> bool:
    """A standby worker, set up and joined: say so (a ``standby`` event), then wait for the
    launcher's ``go`` on stdin. True: go on (resume from the newest checkpoint then, and
    train); False: the standby is not needed (stdin closed or anything else said)."""
    emit(StandbyReady(rank=rank, setup_seconds=round(setup_seconds, 3)))
    line = (stream or sys.stdin).readline()
    return line.strip() == GO_LINE


#: The exit status of a worker stopped by a signal after writing its step checkpoint
#: (``STOP_ON_SIGNAL_ENV`` set): 128 + SIGTERM, as if the signal had ended it.
PREEMPTED_EXIT = 143


def _any_rank(world: int):
    """``flag -> any rank's flag``: a sum over ranks (one small AllReduce), or the flag alone."""
    if world <= 1:
        return bool
    import mindspore as ms
    import numpy as np

    from wrn.steps import AllReduceSum

    reduce = AllReduceSum()
    return lambda flag: float(reduce(ms.Tensor(np.array([float(flag)], np.float32))).asnumpy()[0]) > 0


def train(cfg: TrainConfig, output_dir: Path, info: WorldInfo, resume_ckpt: str | None = None,
          resume_from: str | None = None, pretrained: str | None = None, force: bool = False,
          rescan: str | None = None, extra_callbacks: Sequence[Any] = ()) -> int:
    """Run training + final evaluation for this rank; return the exit code.

    The wiring: ``setup``, ``resume``, a ``start`` event, then ``wrn.loop.run_loop`` (on
    Ascend ``run_sink_loop``, data sinking: ``wrn.loop.choose_loop``) with its
    callbacks (progress events, checkpoints, evaluation and ``eval.json``, the MindInsight
    summary), then a ``finish`` event. ``resume_ckpt``, ``resume_from`` and ``force``: see
    ``resume``; ``pretrained``: initialise weights only (transfer learning); ``rescan``: see
    ``setup``; a standby worker (``STANDBY_ENV``) waits after ``setup`` until it is needed;
    ``extra_callbacks`` run after the others (the position for diagnostics, injected
    faults).
    """
    t_start = time.time()
    run = setup(cfg, output_dir, info, resume_ckpt, pretrained, rescan)
    if os.environ.get(STANDBY_ENV) == "1" and not wait_as_standby(run.rank, time.time() - t_start):
        return 0
    from wrn.models import count_trainable
    from wrn.steps import param_checksum
    from wrn.summary import open_summary

    start = resume(run, resume_ckpt, resume_from, force)
    summary = open_summary(output_dir, cfg.summary_base_dir, run.rank)
    loop = choose_loop(run.device_target, cfg.sink_size, cfg.log_interval, run.steps_per_epoch)
    emit(Start(rank=run.rank, world_size=run.world, model=cfg.model, params=count_trainable(run.net),
                steps_per_epoch=run.steps_per_epoch, epochs=cfg.epoch_size, batch_size=cfg.batch_size,
                device_target=run.device_target, amp_level=run.amp, host=host_name(), pid=os.getpid(),
                train_images=len(run.train_split.files), test_images=len(run.test_split.files),
                start_epoch=start.epochs_done, start_step=start.skip_steps, threads=run.threads,
                resumed_from=start.source, setup_seconds=round(time.time() - t_start, 3),
                sink_size=loop.sink_size))
    evaluator = Evaluator(run.evaluate, run.sync_batchnorm, interval=cfg.eval_interval,
                          result_path=output_dir / "eval.json",
                          result_fields={"split": "test", "classes": len(run.classes),
                                         "model": cfg.model, "world_size": run.world})
    saver = CheckpointSaver(run.save_checkpoint, run.sync_batchnorm,
                            every_steps=cfg.save_checkpoint_steps,
                            every_epochs=cfg.save_checkpoint_epochs)
    callbacks = [ProgressEvents(cfg.batch_size, cfg.log_interval, run.lr), saver,
                 evaluator, SummaryRecorder(summary), *extra_callbacks]
    if os.environ.get(STOP_ON_SIGNAL_ENV) == "1":
        stopper = StopOnSignal(saver, _any_rank(run.world), run.keep_local_bn_stats)
        stopper.install()
        callbacks.append(stopper)  # after a regular checkpoint and the eval of the same step
    state = LoopState(run.rank, cfg.epoch_size, run.steps_per_epoch, global_step=start.global_step,
                      callbacks=callbacks)
    try:
        if loop.sinks:
            run_sink_loop(run.sink_epoch, state, loop.sink_size, start.epochs_done, start.skip_steps)
        else:
            run_loop(run.step_cell, run.train_batches, state, start.epochs_done, start.skip_steps)
    except Preempted as stop:
        emit(WarningEvent.of(run.rank, message=f"preempted: {stop}", preempted=True,
                    epoch=stop.epoch, step=stop.step, global_step=stop.global_step))
        return PREEMPTED_EXIT
    emit(Finish(rank=run.rank, status="ok", checksum=param_checksum(run.net),
                top1=evaluator.final["top1"], seconds=round(time.time() - t_start, 3),
                global_step=state.global_step, max_rss_mib=peak_rss_mib()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m wrn.train``."""
    info = world_from_env()
    if info.role == "scheduler":
        from wrn.scheduler import run_scheduler

        return run_scheduler()
    position = stacks.install()  # first: a hang anywhere after this can be located
    prepare_process_env()
    rank = max(info.rank, 0)
    try:
        injector = faults.from_env(rank)
        args, cfg = parse_args(argv)
        output_dir = Path(args.output_dir or cfg.ckpt_path)
        extra = [c for c in (position, injector) if c is not None]
        return train(cfg, output_dir, info, resume_ckpt=args.resume_ckpt,
                     resume_from=args.resume_from, pretrained=args.pretrained, force=args.force,
                     rescan=args.rescan, extra_callbacks=extra)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        emit(Error(rank=rank, message=str(exc), error_kind="ConfigError"))
        return 2
    except KeyboardInterrupt:
        emit(Error(rank=rank, message="interrupted", error_kind="KeyboardInterrupt"))
        return 130
    except Exception as exc:  # report, then fail: the launcher shows this rank's log tail
        traceback.print_exc()
        sys.stderr.flush()
        emit(Error(rank=rank, message=f"{type(exc).__name__}: {exc}", error_kind=type(exc).__name__))
        return 1


if __name__ == "__main__":
    sys.exit(main())
