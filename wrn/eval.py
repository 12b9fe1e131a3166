"""Evaluate a checkpoint: ``python -m wrn.eval --config FILE --ckpt FILE [--output-dir DIR]``.

Runs standalone or distributed (same environment contract as ``wrn.train``): every rank
scores its own disjoint shard of the test split and the counts are summed, so the accuracy is
exact and equal to a single-process evaluation. Labels use the class index saved with the
training run (``classes.json`` next to the checkpoint's run, or ``--classes``), so a test split
that lacks some classes is still scored correctly. Writes ``eval.json`` into the output dir.

ModelZoo spellings are accepted: ``--checkpoint_path=FILE`` / ``--ckpt_file=FILE`` for ``--ckpt``.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from wrn.config import ConfigError, load_config, split_modelzoo_args
from wrn.contract import Error, Eval, Finish, emit
from wrn.dist import prepare_process_env, resolve_device_target, setup_mindspore, thread_budget, world_from_env
from wrn.fileio import write_json_atomic

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


def evaluate_checkpoint(cfg, ckpt: Path, info, classes_path: str | None, output_dir: str | None) -> int:
    """Load ``ckpt`` into the configured model and score the test split; rank 0 writes eval.json."""
    import os

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
    from wrn.steps import evaluate, param_checksum

    index_file = find_class_index(ckpt, classes_path)
    classes = load_class_index(index_file) if index_file else build_class_index(root)
    if len(classes) != cfg.num_classes:
        raise ConfigError(f"the class index ({index_file or root / 'train'}) has {len(classes)} "
                          f"classes but num_classes is {cfg.num_classes}; pass --set "
                          f"num_classes={len(classes)} or the config used for training")
    split = scan_split(root, "test", classes, verify=cfg.verify_images)
    net = build_model(cfg.model, cfg.num_classes, cfg.image_size, cfg.dropout)
    meta = checkpoint.load(ckpt, net)
    budget = thread_budget()
    workers = max(1, min(cfg.num_parallel_workers, budget or os.cpu_count() or 1))
    dataset, _ = eval_dataset(split, rank=rank, world=world, batch_size=cfg.batch_size,
                              image_size=cfg.image_size, num_workers=workers)
    result = evaluate(net, dataset, world) | {"epoch": meta.get("epoch")}
    if rank == 0:
        emit(Eval.of(rank, **result))
        out = Path(output_dir) if output_dir else (ckpt.parent.parent if ckpt.parent.name == "checkpoints"
                                                    else ckpt.parent)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "eval.json", {k: v for k, v in result.items() if not k.startswith("local_")}
                          | {"split": "test", "checkpoint": str(ckpt), "classes": len(classes),
                             "model": cfg.model, "world_size": world})
        print(f"top-1 accuracy: {result['top1']:.4f} ({result['correct']}/{result['total']}) "
              f"on {root / 'test'}", flush=True)
    emit(Finish(rank=rank, status="ok", checksum=param_checksum(net), top1=result["top1"],
                seconds=round(time.time() - t0, 3)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
