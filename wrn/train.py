"""The training worker: ``python -m wrn.train --config FILE [--output-dir DIR] [--set k=v ...]``.

One process per device. It reads its place in the job from the environment (see
``wrn.dist``), so it runs the same under ``wrn-launch``, under ``msrun`` and standalone.
It trains data-parallel (gradients averaged over ranks), evaluates exactly (each rank scores
its own disjoint shard, counts are summed), lets rank 0 write checkpoints atomically, and
reports progress as events (``wrn.events``) on stdout. Exit code 0 on success, 2 on bad
input, 1 on any other error (an ``error`` event says why).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from wrn import events
from wrn.config import ConfigError, TrainConfig, load_config, split_modelzoo_args
from wrn.fileio import write_json_atomic
from wrn.hostname import host_name
from wrn.dist import WorldInfo, prepare_process_env, resolve_device_target, setup_mindspore, \
    thread_budget, world_from_env


def build_arg_parser(prog: str = "python -m wrn.train") -> argparse.ArgumentParser:
    """Command-line flags of the worker (config keys come as --set k=v or --key=value)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="YAML config (default: configs/default.yaml)")
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
                events.emit("warning", rank, message=f"skipping checkpoint {path.name}: {exc}",
                            checkpoint=str(path))
    raise ConfigError(f"no checkpoint in {directory} verifies ({'; '.join(problems)}); "
                      f"start a new run or pass an intact file with --resume-ckpt")


def train(cfg: TrainConfig, output_dir: Path, info: WorldInfo, resume_ckpt: str | None = None,
          resume_from: str | None = None, pretrained: str | None = None, force: bool = False) -> int:
    """Run training + final evaluation for this rank; return the exit code.

    ``resume_ckpt``: continue exactly from this checkpoint (fails if it does not verify).
    ``resume_from``: continue from the newest checkpoint in this folder that verifies (none
    there: start from scratch). ``pretrained``: initialise weights only (transfer learning).
    A checkpoint whose maths-relevant config differs is refused unless ``force``.
    """
    from wrn import checkpoint, data

    t_start = time.time()
    device_target = resolve_device_target(cfg.device_target)
    root = data.resolve_data_path(cfg.data_path)
    classes = data.build_class_index(root)
    if len(classes) != cfg.num_classes:
        raise ConfigError(f"data_path {root}: train/ has {len(classes)} class folders but "
                          f"num_classes is {cfg.num_classes}; set num_classes: {len(classes)} "
                          f"in the config or pass --set num_classes={len(classes)}")
    for flag, path in (("--resume-ckpt", resume_ckpt), ("--pretrained", pretrained)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{flag} {path}: no such checkpoint file")
    info = setup_mindspore(device_target, cfg.mode, cfg.seed, info)
    rank, world = max(info.rank, 0), info.world_size

    import mindspore as ms
    import numpy as np

    from wrn.lr import lr_schedule
    from wrn.summary import open_summary
    from wrn.models import build_model, count_trainable
    from wrn.steps import amp_level_for, evaluate, make_loss, make_optimizer, make_train_step, \
        param_checksum, sync_batchnorm_stats

    budget = thread_budget()
    num_workers = max(1, min(cfg.num_parallel_workers, budget or os.cpu_count() or 1))
    train_split = data.scan_split(root, "train", classes, verify=cfg.verify_images)
    test_split = data.scan_split(root, "test", classes, verify=cfg.verify_images)
    if rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        data.save_class_index(classes, output_dir / "classes.json")
        skipped = list(train_split.skipped) + list(test_split.skipped)
        if skipped:
            events.emit("warning", rank, message=f"skipped {len(skipped)} unreadable image file(s)",
                        skipped_files=len(skipped),
                        examples=[f"{p}: {why}" for p, why in skipped[:5]])
    steps_per_epoch = data.steps_per_epoch(len(train_split.files), world, cfg.batch_size)

    net = build_model(cfg.model, cfg.num_classes, cfg.image_size, cfg.dropout)
    if pretrained:
        try:
            dropped = checkpoint.load_pretrained(pretrained, net)
        except ValueError as exc:  # another model, or an unreadable file: the user's input
            raise ConfigError(str(exc)) from None
        if rank == 0:
            events.emit("warning", rank, message=f"initialised from {pretrained}"
                        + (f"; classifier head not loaded ({', '.join(dropped)}: class count "
                           f"differs) and trained from scratch" if dropped else ""),
                        pretrained=pretrained, dropped=dropped)
    lr = lr_schedule(cfg.lr_schedule, cfg.lr, steps_per_epoch, cfg.epoch_size,
                     warmup_epochs=cfg.warmup_epochs, lr_end=cfg.lr_end,
                     decay_epochs=cfg.lr_decay_epochs, decay_factor=cfg.lr_decay_factor)
    amp = amp_level_for(cfg, device_target)
    optimizer = make_optimizer(net, cfg, lr, loss_scale=cfg.loss_scale if amp != "O0" else 1.0)
    step_cell = make_train_step(net, make_loss(cfg.label_smoothing), optimizer, amp, cfg.loss_scale)

    chash = checkpoint.config_hash(cfg.to_dict())
    start = StartPoint()
    found = None
    if resume_ckpt:
        found = checkpoint.load(resume_ckpt, step_cell), Path(resume_ckpt)
    elif resume_from:
        found = find_resume_checkpoint(Path(resume_from), step_cell, rank)
    if found:
        meta, path = found
        if meta.get("config_hash") not in (None, chash) and not force:
            raise ConfigError(f"checkpoint {path} was written with a different config (fields that "
                              f"change the maths: {', '.join(checkpoint.MATH_FIELDS)}); resume with "
                              f"the run's own config.yaml, or add --force to continue anyway")
        start = start_point(meta, steps_per_epoch, world, str(path))
        # the optimizer's step counter is the LR-schedule position
        optimizer.global_step.set_data(ms.Tensor(np.array([start.global_step], np.int32)))
        if start.note and rank == 0:
            events.emit("warning", rank, message=start.note)

    eval_ds, _ = data.eval_dataset(test_split, rank=rank, world=world, batch_size=cfg.batch_size,
                                   image_size=cfg.image_size, num_workers=num_workers)
    summary = open_summary(output_dir, cfg.summary_base_dir, rank)

    def report(kind: str, **fields: Any) -> None:
        """An event on stdout, and (rank 0) the same numbers as MindInsight summary records."""
        events.emit(kind, rank, **fields)
        summary.on_event(kind, **fields)

    events.emit("start", rank, world_size=world, model=cfg.model, params=count_trainable(net),
                steps_per_epoch=steps_per_epoch, epochs=cfg.epoch_size, batch_size=cfg.batch_size,
                device_target=device_target, amp_level=amp, host=host_name(), pid=os.getpid(),
                train_images=len(train_split.files), test_images=len(test_split.files),
                start_epoch=start.epochs_done, start_step=start.skip_steps, threads=budget,
                resumed_from=start.source, setup_seconds=round(time.time() - t_start, 3))

    ckpt_dir = output_dir / "checkpoints"

    def save(epoch: int, step: int, global_step: int) -> None:
        # every rank calls this (the BN average is a collective); rank 0 writes the file
        sync_batchnorm_stats(net, world)
        if rank != 0:
            return
        meta = {"epoch": epoch, "step": step, "global_step": global_step, "world_size": world,
                "seed": cfg.seed, "steps_per_epoch": steps_per_epoch, "config_hash": chash,
                "model": cfg.model}
        path = checkpoint.save(step_cell, ckpt_dir, cfg.checkpoint_name, meta,
                               keep=cfg.keep_checkpoint_max)
        events.emit("checkpoint", rank, epoch=epoch, step=step, global_step=global_step, path=str(path))

    global_step = start.global_step
    for epoch in range(start.epochs_done + 1, cfg.epoch_size + 1):
        skip = start.skip_steps if epoch == start.epochs_done + 1 else 0
        # One pipeline per epoch, its augmentation seed derived from (seed, rank, epoch), and
        # the batches already trained on dropped after augmentation: the random crops of an
        # epoch are then the same whether the run was interrupted or not.
        train_ds, _ = data.train_dataset(train_split, rank=rank, world=world,
                                         batch_size=cfg.batch_size, image_size=cfg.image_size,
                                         seed=cfg.seed, num_workers=num_workers,
                                         crop_min_scale=cfg.crop_min_scale, start_epoch=epoch - 1,
                                         skip_steps=skip, replay_skipped=True)
        it = iter(train_ds.create_tuple_iterator(num_epochs=1))
        t_epoch = t_window = time.time()
        wait = window_wait = 0.0
        losses = []
        window_steps = 0
        step = skip
        while True:
            t_fetch = time.time()
            try:
                images, labels = next(it)
            except StopIteration:
                break
            fetched = time.time() - t_fetch
            wait += fetched
            window_wait += fetched
            loss = step_cell(images, labels)
            losses.append(loss)
            step += 1
            global_step += 1
            window_steps += 1
            if step % cfg.log_interval == 0 or step == steps_per_epoch:
                now = time.time()
                report("step", epoch=epoch, step=step, steps_per_epoch=steps_per_epoch,
                            global_step=global_step, loss=round(float(loss.asnumpy()), 6),
                            lr=float(lr[min(global_step - 1, len(lr) - 1)]),
                            imgs_per_s=round(window_steps * cfg.batch_size / max(now - t_window, 1e-9), 2),
                            data_wait_s=round(window_wait / max(window_steps, 1), 5))
                t_window, window_wait, window_steps = now, 0.0, 0
            if cfg.save_checkpoint_steps and step % cfg.save_checkpoint_steps == 0 \
                    and step != steps_per_epoch:
                save(epoch, step, global_step)
        seconds = time.time() - t_epoch
        done = step - skip
        epoch_loss = float(np.mean([l.asnumpy() for l in losses])) if losses else float("nan")
        report("epoch_end", epoch=epoch, loss=round(epoch_loss, 6),
                    seconds=round(seconds, 3), steps=done,
                    imgs_per_s=round(done * cfg.batch_size / max(seconds, 1e-9), 2),
                    data_wait_s=round(wait / max(done, 1), 5), max_rss_mib=peak_rss_mib())
        is_last = epoch == cfg.epoch_size
        do_ckpt = epoch % cfg.save_checkpoint_epochs == 0 or is_last
        do_eval = bool(cfg.eval_interval) and epoch % cfg.eval_interval == 0 and not is_last
        if do_ckpt:
            save(epoch, steps_per_epoch, global_step)
        if do_eval:
            sync_batchnorm_stats(net, world)  # the evaluated model is the same on every rank
            result = evaluate(net, eval_ds, world) | {"epoch": epoch}
            if rank == 0:
                report("eval", **result)
    sync_batchnorm_stats(net, world)
    final = evaluate(net, eval_ds, world) | {"epoch": cfg.epoch_size}
    checksum = param_checksum(net)
    if rank == 0:
        report("eval", **final)
        write_json_atomic(output_dir / "eval.json",
                          {k: v for k, v in final.items() if not k.startswith("local_")}
                          | {"split": "test", "classes": len(classes), "model": cfg.model,
                             "world_size": world})
    summary.close()
    events.emit("finish", rank, status="ok", checksum=checksum, top1=final["top1"],
                seconds=round(time.time() - t_start, 3), global_step=global_step,
                max_rss_mib=peak_rss_mib())
    return 0


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB (the pipeline's workers are threads)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m wrn.train``."""
    info = world_from_env()
    if info.role == "scheduler":
        from wrn.scheduler import run_scheduler

        return run_scheduler()
    prepare_process_env()
    rank = max(info.rank, 0)
    try:
        args, cfg = parse_args(argv)
        output_dir = Path(args.output_dir or cfg.ckpt_path)
        return train(cfg, output_dir, info, resume_ckpt=args.resume_ckpt,
                     resume_from=args.resume_from, pretrained=args.pretrained, force=args.force)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        events.emit("error", rank, message=str(exc), kind="ConfigError")
        return 2
    except KeyboardInterrupt:
        events.emit("error", rank, message="interrupted", kind="KeyboardInterrupt")
        return 130
    except Exception as exc:  # report, then fail: the launcher shows this rank's log tail
        traceback.print_exc()
        sys.stderr.flush()
        events.emit("error", rank, message=f"{type(exc).__name__}: {exc}", kind=type(exc).__name__)
        return 1


if __name__ == "__main__":
    sys.exit(main())
