"""What a run directory holds besides run.json and metrics.jsonl, read back for reports: the
resolved config (``config.yaml``), the class index (``classes.json``), the checkpoint to
fine-tune from, the newest evaluation and prediction results, and exported models.

Where each comes from:

* evaluation: ``RUN/eval.json`` (training's final evaluation, or ``python -m wrn.eval``) and
  ``RUN/eval/<UTC stamp>/eval.json`` (``wrn-launch eval``, with the run.json of its launch
  beside it); the newest wins;
* prediction: ``RUN/predict/<UTC stamp>.json`` (``wrn-launch predict``, ``"kind": "predict"``);
* exported models: ``*.mindir``, ``*.onnx`` and ``*.air`` files anywhere in the run directory
  (``wrn-launch export`` writes into the current folder unless told otherwise, so one outside
  the run directory is not found).

Nothing here writes, and a missing or damaged file reads as absent: a report says what it could
not find instead of failing. The one expensive step, building the model to count its
parameters (MindSpore), runs only when asked for and only for a run whose start event lacks
the count.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cluster.plan import CONFIG_NAME
from launcher.rundir.reading import LoadedRun, RunDirError, parse_time, read_run_record
from launcher.rundir.record import RUN_JSON, RunRecord
from wrn.contract import number, whole

CHECKPOINTS = "checkpoints"
CLASSES = "classes.json"
EVAL_JSON = "eval.json"
EVAL_DIR = "eval"
PREDICT_DIR = "predict"
#: Exported model files by suffix, as ``wrn.export`` names them.
MODEL_SUFFIXES = {".mindir": "MINDIR", ".onnx": "ONNX", ".air": "AIR"}


@dataclass(frozen=True)
class FileInfo:
    """A file of the run: its path and size in bytes."""

    path: Path
    size: int


@dataclass(frozen=True)
class ResultRecord:
    """A result file (eval or predict): its path, its JSON object, when it was made (its
    ``time`` field, else the file's modification time) and, for ``wrn-launch eval``'s, the
    run record of the evaluation's own launch (``eval/<stamp>/run.json``: devices, hosts,
    machines, versions)."""

    path: Path
    data: dict[str, Any]
    when: _dt.datetime | None
    record: RunRecord | None = None


@dataclass(frozen=True)
class RunArtifacts:
    """The files of a run a report reads (see the module docstring). ``checkpoint_how``:
    ``"best"`` (the best-evaluated epoch's, as the run summary names it), ``"latest"``
    (checkpoints/latest.json) or ``"newest"`` (the newest ``*.ckpt``). ``params_built``: the
    trainable parameter count of the config's model, counted only when asked for and the
    run's start event does not carry it."""

    config: dict[str, Any] | None = None
    classes: int | None = None
    checkpoint: FileInfo | None = None
    checkpoint_how: str | None = None
    eval: ResultRecord | None = None
    predict: ResultRecord | None = None
    exported: tuple[FileInfo, ...] = field(default_factory=tuple)
    params_built: int | None = None


def read_json(path: Path) -> Any:
    """A JSON file's value; None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """``config.yaml`` as a mapping, read leniently (a key of the wrong type is the reader's
    concern); None when missing or not YAML. It is not validated as a ``TrainConfig``: a
    config of another wrn-launch version still reports what it says."""
    try:
        value = yaml.safe_load((run_dir / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return value if isinstance(value, dict) else None


def class_count(run_dir: Path) -> int | None:
    """How many classes ``classes.json`` (the run's pinned class index) lists."""
    value = read_json(run_dir / CLASSES)
    return len(value) if isinstance(value, list) else None


def _when(data: dict[str, Any], path: Path) -> _dt.datetime | None:
    """A result's time: its ``time`` field (ISO 8601 text or UNIX seconds), else the file's
    modification time."""
    stamp = data.get("time")
    when = parse_time(stamp)
    if when is None and number(stamp) is not None:
        try:
            when = _dt.datetime.fromtimestamp(float(stamp), _dt.UTC)
        except (OverflowError, OSError, ValueError):
            when = None
    if when is None:
        try:
            when = _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.UTC)
        except OSError:
            return None
    return when


def _record(path: Path, kind: str | None = None, launched: bool = False) -> ResultRecord | None:
    """The result in ``path`` (None: missing, not a JSON object, or not of ``kind``);
    ``launched``: it lies in a launch's own folder, whose run.json is read too."""
    data = read_json(path)
    if not isinstance(data, dict) or (kind is not None and data.get("kind") != kind):
        return None
    record = None
    if launched and (path.parent / RUN_JSON).is_file():
        try:
            record = read_run_record(path.parent)[1]
        except RunDirError:
            record = None
    return ResultRecord(path, data, _when(data, path), record)


def _newest(records: list[ResultRecord | None]) -> ResultRecord | None:
    """The newest record; one of unknown time counts as oldest, file order breaks ties (the
    UTC stamps of the names sort in time order)."""
    found = [r for r in records if r is not None]
    if not found:
        return None
    far = _dt.datetime.min.replace(tzinfo=_dt.UTC)
    return max(reversed(found), key=lambda r: r.when or far)


def is_training_eval(result: ResultRecord, run_dir: Path) -> bool:
    """An eval.json the training itself wrote (its final evaluation): in the run directory,
    naming no checkpoint (``python -m wrn.eval`` and ``wrn-launch eval`` name the one they
    loaded) and of no ``kind``."""
    return result.path.parent == run_dir and "checkpoint" not in result.data \
        and result.data.get("kind") is None


def newest_eval(run_dir: Path, ended: _dt.datetime | None = None) -> ResultRecord | None:
    """The newest evaluation result of the run (see the module docstring). ``ended``: when
    the training ended, the time of its own final evaluation, which records none (its file
    time changes when the run directory is copied)."""
    stamped = sorted((run_dir / EVAL_DIR).glob(f"*/{EVAL_JSON}")) if (run_dir / EVAL_DIR).is_dir() else []
    own = _record(run_dir / EVAL_JSON)
    if own is not None and ended is not None and "time" not in own.data and is_training_eval(own, run_dir):
        own = dataclasses.replace(own, when=ended)
    return _newest([own] + [_record(p, launched=True) for p in stamped])


def newest_predict(run_dir: Path) -> ResultRecord | None:
    """The newest prediction result of the run (``predict/<stamp>.json``)."""
    folder = run_dir / PREDICT_DIR
    paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return _newest([_record(p, kind="predict") for p in paths])


def _file(path: Path) -> FileInfo | None:
    try:
        return FileInfo(path, path.stat().st_size) if path.is_file() else None
    except OSError:
        return None


def fine_tune_checkpoint(run: LoadedRun) -> tuple[FileInfo | None, str | None]:
    """The checkpoint to fine-tune from, in ``RUN/checkpoints``, and how it was chosen: the
    best-evaluated one the run summary names (looked up by name, so a copied run directory
    still finds it), else the one ``latest.json`` names, else the newest checkpoint by epoch
    and step (``wrn.checkpoint.list_checkpoints``)."""
    folder = run.path / CHECKPOINTS
    best = run.summary.get("best_checkpoint") or run.progress().best_checkpoint()
    if isinstance(best, str) and (found := _file(folder / Path(best).name)):
        return found, "best"
    latest = read_json(folder / "latest.json")
    if isinstance(latest, dict) and isinstance(latest.get("path"), str) \
            and (found := _file(folder / Path(latest["path"]).name)):
        return found, "latest"
    from wrn.checkpoint import list_checkpoints  # by (epoch, step), as --resume orders them

    files = [f for f in map(_file, list_checkpoints(folder)) if f is not None]
    if files:
        return files[-1], "newest"
    return None, None


def exported_models(run_dir: Path) -> tuple[FileInfo, ...]:
    """Every exported model file in the run directory, newest first."""
    found = []
    for folder, _dirs, names in os.walk(run_dir):
        for name in names:
            if Path(name).suffix.lower() in MODEL_SUFFIXES and not name.startswith("."):
                info = _file(Path(folder) / name)
                if info is not None:
                    found.append(info)
    return tuple(sorted(found, key=lambda f: f.path.stat().st_mtime, reverse=True))


def built_parameters(config: dict[str, Any] | None) -> int | None:
    """The trainable parameters of the config's model, counted as ``wrn-launch model`` counts
    them (``wrn.models.count_trainable`` of ``build_model``); imports MindSpore, so only here.
    None when the config does not name a buildable model."""
    if not config:
        return None
    name, classes, size = config.get("model"), whole(config.get("num_classes")), whole(config.get("image_size"))
    if not isinstance(name, str) or classes is None or size is None:
        return None
    from wrn.models import build_model, count_trainable
    try:
        return count_trainable(build_model(name, classes, image_size=size))
    except ValueError:
        return None


def read_artifacts(run: LoadedRun, count_parameters: bool = False) -> RunArtifacts:
    """Everything a report reads besides the run record and its events; ``count_parameters``:
    build the model to count its parameters when the start event did not record them."""
    config = read_config(run.path)
    best, how = fine_tune_checkpoint(run)
    start = run.start_event
    params = None
    if count_parameters and (start is None or start.params is None):
        params = built_parameters(config)
    return RunArtifacts(config=config, classes=class_count(run.path), checkpoint=best, checkpoint_how=how,
                        eval=newest_eval(run.path, parse_time(run.record.end_time)), predict=newest_predict(run.path),
                        exported=exported_models(run.path), params_built=params)
