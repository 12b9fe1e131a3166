"""Which checkpoint a command uses when it is given a run directory, and the files that go with
a checkpoint (its run's config.yaml and classes.json).

``pick_checkpoint(RUN)`` takes the checkpoint of the best evaluated epoch among the files still
there and whole, else the newest whole one, and says which and why; ``checkpoint_inputs``
resolves a checkpoint file or a run directory into an ``EvalInputs`` value. Files are checked
with ``wrn.checkpoint.scan_checkpoint`` (structure and CRC, constant memory, no MindSpore), so
a file cut short by a crash is passed over, never loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cluster.plan import CONFIG_NAME
from launcher.rundir.layout import METRICS
from launcher.rundir.reading import read_events
from wrn.contract import Checkpoint, Eval, event_from
from wrn.fileio import expand_user

CLASSES_NAME = "classes.json"
CHECKPOINTS_DIR = "checkpoints"


class CheckpointChoiceError(Exception):
    """No usable checkpoint (or its config/classes) for what was given; ``str()`` is one paragraph."""


@dataclass(frozen=True)
class EvalInputs:
    """A checkpoint and the files that describe it: ``run_dir`` is the training run it belongs
    to (None for a loose file), ``why`` says how the checkpoint was chosen. ``classes`` is None
    when no classes.json was given or kept with the run: the class names are then the data's
    train/ folders, listed as training lists them."""

    checkpoint: Path
    config: Path
    classes: Path | None
    run_dir: Path | None
    why: str


def _whole(path: Path) -> str | None:
    """None when ``path`` is a complete checkpoint, else why not."""
    from wrn.checkpoint import scan_checkpoint

    try:
        scan_checkpoint(path)
    except OSError as exc:
        return str(exc)
    return None


def _scores(run_dir: Path) -> dict[Path, tuple[float, int]]:
    """Checkpoint file -> (top-1, epoch) of the evaluation of the epoch it was written at the
    end of, from the run's events (rank 0 writes both)."""
    written: dict[int, Path] = {}
    top1: dict[int, float] = {}
    records, _ = read_events(run_dir / METRICS)
    for event in map(event_from, records):
        if isinstance(event, Checkpoint) and event.epoch is not None and event.path:
            written[event.epoch] = Path(event.path).resolve()
        elif isinstance(event, Eval) and event.epoch is not None and event.top1 is not None:
            top1[event.epoch] = event.top1
    return {path: (top1[epoch], epoch) for epoch, path in written.items() if epoch in top1}


def pick_checkpoint(run_dir: Path) -> tuple[Path, str]:
    """(checkpoint, why) of a run directory: the best evaluated whole checkpoint (ties: the
    later epoch), else the newest whole one. Raises ``CheckpointChoiceError`` when none is whole."""
    from wrn.checkpoint import list_checkpoints

    found = list_checkpoints(run_dir / CHECKPOINTS_DIR)
    if not found:
        raise CheckpointChoiceError(
            f"{run_dir}: the run has no checkpoints in {run_dir / CHECKPOINTS_DIR} (it wrote "
            f"none yet, or they were removed); pass a checkpoint file instead, or wait for the "
            f"run's first save (save_checkpoint_epochs in its config.yaml)")
    broken = {p: why for p in found if (why := _whole(p)) is not None}
    whole = [p.resolve() for p in found if p not in broken]
    if not whole:
        names = "; ".join(f"{p.name} ({why})" for p, why in broken.items())
        raise CheckpointChoiceError(f"{run_dir}: none of the run's checkpoints is complete: {names}; "
                                    f"pass an intact checkpoint file")
    skipped = f"; {len(broken)} incomplete file(s) passed over" if broken else ""
    scored = {p: s for p, s in _scores(run_dir).items() if p in whole}
    if scored:
        best = max(scored, key=lambda p: scored[p])
        top1, epoch = scored[best]
        return best, f"best evaluated: top-1 {top1:.2%} after epoch {epoch}{skipped}"
    return whole[-1], f"newest complete checkpoint (no evaluation of a kept one){skipped}"


def _run_dir_of(ckpt: Path) -> Path | None:
    """The training run a checkpoint belongs to: ``RUN/checkpoints/x.ckpt`` -> RUN, or the
    folder of a checkpoint lying next to a config.yaml."""
    for folder in (ckpt.parent.parent, ckpt.parent) if ckpt.parent.name == CHECKPOINTS_DIR else (ckpt.parent,):
        if (folder / CONFIG_NAME).is_file():
            return folder
    return None


def checkpoint_inputs(target: str, config: str | None = None, classes: str | None = None) -> EvalInputs:
    """Resolve ``target`` (a checkpoint file or a run directory) with the optional explicit
    ``config`` and ``classes`` files into an ``EvalInputs``; ``CheckpointChoiceError`` when the
    target, its config or its class index cannot be found."""
    path = expand_user(target)
    if path.is_dir():
        run_dir: Path | None = path.resolve()
        if not (path / CONFIG_NAME).is_file() and not (path / CHECKPOINTS_DIR).is_dir():
            raise CheckpointChoiceError(f"{target}: not a run directory (no {CONFIG_NAME}, no "
                                        f"{CHECKPOINTS_DIR}/); pass a training run's directory or one "
                                        f"of its checkpoint files (see 'wrn-launch runs')")
        ckpt, why = pick_checkpoint(run_dir)
    elif path.is_file():
        if path.suffix != ".ckpt":
            raise CheckpointChoiceError(
                f"{target}: not a checkpoint (.ckpt) or a run directory; evaluate a training "
                f"checkpoint such as RUN/checkpoints/<name>.ckpt, or the run directory itself "
                f"(its best evaluated checkpoint is used); an exported MINDIR or ONNX model is "
                f"scored with 'wrn-launch predict MODEL IMAGES'")
        broken = _whole(path)
        if broken:
            raise CheckpointChoiceError(f"{target}: not a complete checkpoint ({broken}); pass an "
                                        f"intact .ckpt, e.g. an earlier one of the same run")
        ckpt, why = path.resolve(), "given"
        run_dir = _run_dir_of(ckpt)
    else:
        raise CheckpointChoiceError(f"{target}: no such checkpoint file or run directory; pass "
                                    f"RUN/checkpoints/<name>.ckpt or RUN (see 'wrn-launch runs')")
    config_path = _described_by(config, run_dir, CONFIG_NAME, "--config", "training config")
    classes_path = None  # no index kept: the class names are the data's train/ folders
    if classes or (run_dir is not None and (run_dir / CLASSES_NAME).is_file()):
        classes_path = _described_by(classes, run_dir, CLASSES_NAME, "--classes", "class index")
    return EvalInputs(ckpt, config_path, classes_path, run_dir, why)


def _described_by(explicit: str | None, run_dir: Path | None, name: str, flag: str, what: str) -> Path:
    if explicit:
        path = expand_user(explicit)
        if not path.is_file():
            raise CheckpointChoiceError(f"{flag} {explicit}: no such file; pass the {what} the "
                                        f"checkpoint was trained with (RUN/{name})")
        return path.resolve()
    if run_dir is not None and (run_dir / name).is_file():
        return run_dir / name
    where = f"in its run directory {run_dir}" if run_dir else "next to the checkpoint"
    raise CheckpointChoiceError(f"the checkpoint has no {name} {where}, so its model and classes "
                                f"are not known; pass {flag} FILE (the training run's {name})")
