"""Evaluate a checkpoint: ``python -m wrn.eval --config FILE --ckpt FILE [--output-dir DIR]``.

Runs standalone or distributed (same environment contract as ``wrn.train``): every rank
scores its own disjoint shard of the test split and the counts are summed, so the accuracy is
exact and equal to a single-process evaluation; the confusion matrix is summed the same way,
so top-5, per-class accuracy and the most confused pairs are exact too. Labels use the class index saved with the
training run (``classes.json`` next to the checkpoint's run, or ``--classes``), so a test split
that lacks some classes is still scored correctly. Writes ``eval.json`` and ``per_class.csv``
into the output dir (see ``output_folder``). ``wrn-launch eval`` launches it on N devices.

ModelZoo spellings are accepted: ``--checkpoint_path=FILE`` / ``--ckpt_file=FILE`` for ``--ckpt``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from wrn.config import ConfigError, load_config, split_modelzoo_args
from wrn.contract import Error, Eval, Finish, Start, Step, emit
from wrn.dist import prepare_process_env, resolve_device_target, setup_mindspore, thread_budget, world_from_env
from wrn.fileio import write_json_atomic
from wrn.hostname import host_name

#: The per-class table written beside eval.json.
PER_CLASS_CSV = "per_class.csv"
#: How many skipped files eval.json names (all of them are counted).
SKIPPED_LISTED = 20

_CKPT_ALIASES = ("--checkpoint_path", "--checkpoint-path", "--ckpt_file", "--ckpt-file",
                 "--ckpt_path_file")


def _normalise_ckpt_flags(argv: list[str]) -> list[str]:
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        out.append(f"--ckpt={value}" if eq and name in _CKPT_ALIASES else
                   ("--ckpt" if arg in _CKPT_ALIASES else arg))
    return out


def find_class_index(ckpt: Path, explicit: str | None) -> Path | None:
    """``classes.json`` for a checkpoint: explicit, else beside it, else in its run directory."""
    if explicit:
        return Path(explicit)
    for candidate in (ckpt.parent / "classes.json", ckpt.parent.parent / "classes.json"):
        if candidate.is_file():
            return candidate
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m wrn.eval``."""
    info = world_from_env()
    if info.role == "scheduler":
        from wrn.scheduler import run_scheduler

        return run_scheduler()
    prepare_process_env()
    argv = _normalise_ckpt_flags(list(sys.argv[1:] if argv is None else argv))
    zoo, rest = split_modelzoo_args(argv)
    parser = argparse.ArgumentParser(prog="python -m wrn.eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--ckpt", required=True, help="checkpoint file to evaluate")
    parser.add_argument("--classes", default=None, help="classes.json of the training run")
    parser.add_argument("--output-dir", default=None, help="where eval.json goes (default: beside "
                        "the checkpoint's run)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(rest)
    rank = max(info.rank, 0)
    try:
        cfg = load_config(args.config, zoo + list(args.overrides))
        ckpt = Path(args.ckpt)
        if not ckpt.is_file():
            raise ConfigError(f"--ckpt {ckpt}: no such checkpoint file; pass the path of a .ckpt "
                              f"written by training (e.g. RUN_DIR/checkpoints/<name>.ckpt)")
        return evaluate_checkpoint(cfg, ckpt, info, args.classes, args.output_dir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        emit(Error(rank=rank, message=str(exc), error_kind="ConfigError"))
        return 2
    except Exception as exc:
        traceback.print_exc()
        emit(Error(rank=rank, message=f"{type(exc).__name__}: {exc}", error_kind=type(exc).__name__))
        return 1


class BatchReporter:
    """``on_batch`` of ``score_split``: a ``Step`` event after the first batch, every
    ``interval`` batches and after the last, so the launcher shows progress and images/s and
    judges stalls by the pace of the evaluation (epoch 1 of 1, a step is a batch)."""

    def __init__(self, rank: int, batches: int, interval: int, clock=time.monotonic):
        self.rank, self.batches, self.interval = rank, batches, max(1, interval)
        self.clock = clock
        self.since, self.rows = clock(), 0

    def __call__(self, n: int, rows: int) -> None:
        self.rows += rows
        if n != 1 and n % self.interval and n != self.batches:
            return
        now = self.clock()
        rate = self.rows / (now - self.since) if now > self.since else None
        emit(Step(rank=self.rank, epoch=1, step=n, steps_per_epoch=self.batches, global_step=n,
                  imgs_per_s=round(rate, 2) if rate is not None else None))
        self.since, self.rows = now, 0


def output_folder(ckpt: Path, explicit: str | None) -> Path:
    """Where eval.json and per_class.csv go: ``--output-dir`` (a launch gives its run
    directory), else the checkpoint's run (``RUN/checkpoints/x.ckpt`` -> ``RUN``) or folder."""
    if explicit:
        return Path(explicit)
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def evaluate_checkpoint(cfg, ckpt: Path, info, classes_path: str | None, output_dir: str | None) -> int:
    """Load ``ckpt`` into the configured model and score the test split per class; rank 0
    writes eval.json and per_class.csv."""
    from wrn import checkpoint
    from wrn.classindex import build_class_index, load_class_index
    from wrn.datapath import resolve_data_path
    from wrn.pipeline import eval_dataset
    from wrn.splits import scan_split

    t0 = time.time()
    device_target = resolve_device_target(cfg.device_target)
    root = resolve_data_path(cfg.data_path)
    info = setup_mindspore(device_target, cfg.mode, cfg.seed, info)
    rank, world = max(info.rank, 0), info.world_size

    from wrn.models import build_model
    from wrn.scores import write_per_class_csv
    from wrn.steps import param_checksum, score_split

    index_file = find_class_index(ckpt, classes_path)
    classes = load_class_index(index_file) if index_file else build_class_index(root)
    if len(classes) != cfg.num_classes:
        raise ConfigError(f"the class index ({index_file or root / 'train'}) has {len(classes)} "
                          f"classes but num_classes is {cfg.num_classes}; pass --set "
                          f"num_classes={len(classes)} or the config used for training")
    split = scan_split(root, "test", classes, verify=cfg.verify_images)
    if rank == 0 and split.skip_message():
        print(f"warning: {split.skip_message()}", file=sys.stderr, flush=True)
    net = build_model(cfg.model, cfg.num_classes, cfg.image_size, cfg.dropout)
    meta = checkpoint.load(ckpt, net)
    budget = thread_budget()
    workers = max(1, min(cfg.num_parallel_workers, budget or os.cpu_count() or 1))
    dataset, _ = eval_dataset(split, rank=rank, world=world, batch_size=cfg.batch_size,
                              image_size=cfg.image_size, num_workers=workers)
    batches = len(dataset.wrn_source) // cfg.batch_size
    emit(Start(rank=rank, world_size=world, model=cfg.model, steps_per_epoch=batches, epochs=1,
               batch_size=cfg.batch_size, device_target=device_target, host=host_name(),
               pid=os.getpid(), test_images=len(split), setup_seconds=round(time.time() - t0, 3)))
    scores = score_split(net, dataset, world, classes,
                         on_batch=BatchReporter(rank, batches, cfg.log_interval))
    seconds = round(time.time() - t0, 3)
    if rank == 0:
        numbers = scores.summary()
        emit(Eval.of(rank, epoch=meta.get("epoch"), top1=numbers["top1"], correct=numbers["correct"],
                     total=numbers["total"], loss=numbers["loss"], top5=numbers["top5"]))
        out = output_folder(ckpt, output_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_per_class_csv(scores, out / PER_CLASS_CSV)
        write_json_atomic(out / "eval.json", {
            "kind": "eval", **numbers, "epoch": meta.get("epoch"), "step": meta.get("step"),
            "split": "test", "data": str(root / "test"), "checkpoint": str(ckpt),
            "classes": len(classes), "skipped": len(split.skipped),
            "skipped_files": [{"path": p, "reason": why} for p, why in split.skipped[:SKIPPED_LISTED]],
            "model": cfg.model, "image_size": cfg.image_size, "batch_size": cfg.batch_size,
            "world_size": world, "per_class_csv": PER_CLASS_CSV, "seconds": seconds,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        print(f"top-1 accuracy: {numbers['top1']:.4f} ({numbers['correct']}/{numbers['total']}), "
              f"top-5 {numbers['top5']:.4f} on {root / 'test'}", flush=True)
    emit(Finish(rank=rank, status="ok", checksum=param_checksum(net), top1=scores.top1, seconds=seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
