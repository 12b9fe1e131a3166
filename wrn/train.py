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
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from wrn import events
from wrn.config import ConfigError, TrainConfig, load_config, split_modelzoo_args
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
    parser.add_argument("--resume-ckpt", default=None, help="start from this checkpoint's weights, "
                        "optimizer state and position")
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


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file and rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# the run


@dataclass
class _Progress:
    epoch: int = 0
    step: int = 0
    global_step: int = 0


def train(cfg: TrainConfig, output_dir: Path, info: WorldInfo, resume_ckpt: str | None = None) -> int:
    """Run training + final evaluation for this rank; return the exit code."""
    from wrn import checkpoint, data

    t_start = time.time()
    device_target = resolve_device_target(cfg.device_target)
    root = data.resolve_data_path(cfg.data_path)
    classes = data.build_class_index(root)
    if len(classes) != cfg.num_classes:
        raise ConfigError(f"data_path {root}: train/ has {len(classes)} class folders but "
                          f"num_classes is {cfg.num_classes}; set num_classes: {len(classes)} "
                          f"in the config or pass --set num_classes={len(classes)}")
    info = setup_mindspore(device_target, cfg.mode, cfg.seed, info)
    rank, world = max(info.rank, 0), info.world_size

    import mindspore as ms
    import mindspore.dataset as msds

    from wrn.lr import lr_schedule
    from wrn.models import build_model, count_trainable
    from wrn.steps import amp_level_for, evaluate, make_loss, make_optimizer, make_train_step, \
        param_checksum, sync_batchnorm_stats

    msds.config.set_seed(cfg.seed)
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

    start = _Progress()
    ckpt_meta: dict[str, Any] = {}
    if resume_ckpt:
        ckpt_meta = {"path": resume_ckpt}
    steps_per_epoch = data.steps_per_epoch(len(train_split.files), world, cfg.batch_size)

    net = build_model(cfg.model, cfg.num_classes, cfg.image_size, cfg.dropout)
    lr = lr_schedule(cfg.lr_schedule, cfg.lr, steps_per_epoch, cfg.epoch_size,
                     warmup_epochs=cfg.warmup_epochs, lr_end=cfg.lr_end,
                     decay_epochs=cfg.lr_decay_epochs, decay_factor=cfg.lr_decay_factor)
    amp = amp_level_for(cfg, device_target)
    optimizer = make_optimizer(net, cfg, lr, loss_scale=cfg.loss_scale if amp != "O0" else 1.0)
    step_cell = make_train_step(net, make_loss(cfg.label_smoothing), optimizer, amp, cfg.loss_scale)

    if resume_ckpt:
        meta = checkpoint.load(resume_ckpt, step_cell)
        start = _Progress(epoch=int(meta.get("epoch", 0)), step=int(meta.get("step", 0)),
                          global_step=int(meta.get("global_step", 0)))
        if start.step >= steps_per_epoch:
            start = _Progress(epoch=start.epoch, step=0, global_step=start.global_step)
        elif start.step > 0:
            start = _Progress(epoch=start.epoch - 1, step=start.step, global_step=start.global_step)
        ckpt_meta.update(meta)

    train_ds, _ = data.train_dataset(train_split, rank=rank, world=world, batch_size=cfg.batch_size,
                                     image_size=cfg.image_size, seed=cfg.seed, num_workers=num_workers,
                                     crop_min_scale=cfg.crop_min_scale, start_epoch=start.epoch,
                                     skip_steps=start.step)
    eval_ds, _ = data.eval_dataset(test_split, rank=rank, world=world, batch_size=cfg.batch_size,
                                   image_size=cfg.image_size, num_workers=num_workers)

    params = count_trainable(net)
    events.emit("start", rank, world_size=world, model=cfg.model, params=params,
                steps_per_epoch=steps_per_epoch, epochs=cfg.epoch_size, batch_size=cfg.batch_size,
                device_target=device_target, amp_level=amp, host=_host(), pid=os.getpid(),
                train_images=len(train_split.files), test_images=len(test_split.files),
                start_epoch=start.epoch, start_step=start.step, threads=budget,
                resumed_from=ckpt_meta.get("path"), setup_seconds=round(time.time() - t_start, 3))

    remaining_epochs = cfg.epoch_size - start.epoch
    last_eval: dict[str, Any] | None = None
    global_step = start.global_step
    ckpt_dir = output_dir / "checkpoints"
    chash = checkpoint.config_hash(cfg.to_dict())
    if remaining_epochs > 0:
        iterator = train_ds.create_tuple_iterator(num_epochs=remaining_epochs)
        for epoch in range(start.epoch + 1, cfg.epoch_size + 1):
            first_step = start.step + 1 if epoch == start.epoch + 1 else 1
            t_epoch = time.time()
            t_window = t_epoch
            wait = 0.0
            window_wait = 0.0
            losses = []
            window_steps = 0
            step = first_step - 1
            it = iter(iterator)
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
                    loss_value = float(loss.asnumpy())
                    now = time.time()
                    events.emit("step", rank, epoch=epoch, step=step, steps_per_epoch=steps_per_epoch,
                                global_step=global_step, loss=round(loss_value, 6),
                                lr=float(lr[min(global_step - 1, len(lr) - 1)]),
                                imgs_per_s=round(window_steps * cfg.batch_size / max(now - t_window, 1e-9), 2),
                                data_wait_s=round(window_wait / max(window_steps, 1), 5))
                    t_window, window_wait, window_steps = now, 0.0, 0
            seconds = time.time() - t_epoch
            done = step - first_step + 1
            import numpy as np

            epoch_loss = float(np.mean([l.asnumpy() for l in losses])) if losses else float("nan")
            events.emit("epoch_end", rank, epoch=epoch, loss=round(epoch_loss, 6),
                        seconds=round(seconds, 3), steps=done,
                        imgs_per_s=round(done * cfg.batch_size / max(seconds, 1e-9), 2),
                        data_wait_s=round(wait / max(done, 1), 5))
            is_last = epoch == cfg.epoch_size
            do_eval = bool(cfg.eval_interval) and epoch % cfg.eval_interval == 0 and not is_last
            do_ckpt = epoch % cfg.save_checkpoint_epochs == 0 or is_last
            if do_eval or do_ckpt:
                # every rank takes part (a collective): the model that is evaluated and saved
                # is the same on all ranks, BN statistics included
                sync_batchnorm_stats(net, world)
            if do_eval:
                last_eval = evaluate(net, eval_ds, world) | {"epoch": epoch}
                if rank == 0:
                    events.emit("eval", rank, **last_eval)
            if rank == 0 and do_ckpt:
                meta = {"epoch": epoch, "step": steps_per_epoch, "global_step": global_step,
                        "world_size": world, "seed": cfg.seed, "config_hash": chash, "model": cfg.model}
                path = checkpoint.save(step_cell, ckpt_dir, cfg.checkpoint_name, meta,
                                       keep=cfg.keep_checkpoint_max)
                events.emit("checkpoint", rank, epoch=epoch, step=steps_per_epoch,
                            global_step=global_step, path=str(path))
    sync_batchnorm_stats(net, world)  # no-op when already in sync after the last epoch
    final = evaluate(net, eval_ds, world) | {"epoch": cfg.epoch_size}
    checksum = param_checksum(net)
    if rank == 0:
        events.emit("eval", rank, **final)
        write_json_atomic(output_dir / "eval.json",
                          {k: v for k, v in final.items() if not k.startswith("local_")}
                          | {"split": "test", "classes": len(classes), "model": cfg.model,
                             "world_size": world})
    events.emit("finish", rank, status="ok", checksum=checksum, top1=final["top1"],
                seconds=round(time.time() - t_start, 3), global_step=global_step)
    return 0


def _host() -> str:
    from wrn.dist import host_name

    return host_name()


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
        return train(cfg, output_dir, info, resume_ckpt=args.resume_ckpt)
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
