"""A run as the two performance tables of a MindSpore ModelZoo README (``wrn-launch report
--modelzoo``), in English or Chinese, as Markdown.

The rows and their labels are those of ModelZoo's README template (``how_to_contribute/
README_TEMPLATE.md``) and of its Chinese READMEs (ResNet's ``README_CN.md`` and others). Every
value comes from the run: run.json (devices, hosts, machines, versions, times), metrics.jsonl
(the start event, step times, losses), config.yaml, classes.json, the checkpoints and the
evaluation or prediction results (``launcher.rundir.artifacts`` reads them). Nothing is filled
in from defaults: a value the run does not hold is written "unknown" ("未知") with the reason.

``training_table`` and ``inference_table`` are pure functions of a ``LoadedRun`` and its
``RunArtifacts``; ``markdown`` writes a table; ``modelzoo_markdown`` is the command's output.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from launcher import PROG
from launcher.rundir.reading import LoadedRun, parse_time
from launcher.ui.formatting import fmt_bytes
from launcher.ui.modelzoo_text import INFERENCE_LABELS, LANGS, TEXT, TRAINING_LABELS
from wrn.contract import Start, Step, number, whole

if TYPE_CHECKING:  # the reader imports yaml and the planner: every CLI start would pay for them
    from launcher.rundir.artifacts import RunArtifacts


def _t(lang: str, key: str, *args: Any, **kwargs: Any) -> str:
    """Phrase ``key`` in ``lang``, filled; English nouns after a count agree with it (the
    Chinese phrases need no plural)."""
    count = kwargs.get("n", kwargs.get("count"))
    for noun in ("hosts", "images", "epochs", "intervals"):
        kwargs.setdefault(noun, noun if count != 1 else noun[:-1])
    return TEXT[lang][key].format(*args, **kwargs)


@dataclass(frozen=True)
class Row:
    """One row of a table: ``key`` (stable, language-free), ``label`` (the template's, in the
    table's language) and ``value`` (None: unknown) or, when unknown, ``why``."""

    key: str
    label: str
    value: str | None
    why: str | None = None

    def cell(self, lang: str) -> str:
        """The value cell: the value, or "unknown" with the reason."""
        if self.value is not None:
            return self.value
        return _t(lang, "unknown_why", self.why) if self.why else _t(lang, "unknown")


@dataclass(frozen=True)
class ZooTable:
    """A table: its title, its column (the device kind), rows and the notes under it."""

    title: str
    column: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    lang: str = "en"

    def row(self, key: str) -> Row:
        return next(r for r in self.rows if r.key == key)


# -- helpers over the run --------------------------------------------------------------------------
@dataclass(frozen=True)
class StepTime:
    """Milliseconds per step: the median of ``count`` intervals between the lead rank's step
    events inside one epoch, over epochs ``first``..``last``; ``warm``: each process's first
    epoch was left out (False: the run had no later epoch, so it is included)."""

    ms: float
    count: int
    rank: int
    first: int
    last: int
    warm: bool


def step_time(run: LoadedRun) -> StepTime | None:
    """The run's time per step from metrics.jsonl (see ``StepTime``). Intervals that cross an
    epoch's end are not used (they hold the evaluation, the checkpoint and the next epoch's
    data start); a start event of the rank (a restart) begins a new series, whose first epoch
    (graph compilation) is left out like the run's first."""
    steps = [e for e in run.of(Step) if e.rank is not None]
    if not steps:
        return None
    lead = min(e.rank for e in steps)
    later: list[tuple[float, int]] = []
    first: list[tuple[float, int]] = []
    prev: Step | None = None
    first_epoch: int | None = None
    for event in run.events:
        if event.rank != lead:
            continue
        if isinstance(event, Start):
            prev, first_epoch = None, None
            continue
        if not isinstance(event, Step) or event.time is None or event.global_step is None \
                or event.epoch is None:
            continue
        if first_epoch is None:
            first_epoch = event.epoch
        if prev is not None and prev.epoch == event.epoch and event.global_step > prev.global_step:
            per_step = (event.time - prev.time) / (event.global_step - prev.global_step) * 1000.0
            (first if event.epoch == first_epoch else later).append((per_step, event.epoch))
        prev = event
    chosen, warm = (later, True) if later else (first, False)
    if not chosen:
        return None
    epochs = [epoch for _, epoch in chosen]
    return StepTime(statistics.median(ms for ms, _ in chosen), len(chosen), lead,
                    min(epochs), max(epochs), warm)


def model_title(name: Any) -> str | None:
    """``wrn28_10`` -> ``WRN-28-10 (wrn28_10)``; another name as it is; None stays None."""
    if not isinstance(name, str):
        return None
    match = re.fullmatch(r"wrn(\d+)_(\d+)", name)
    return f"WRN-{match.group(1)}-{match.group(2)} ({name})" if match else name


def _duration(lang: str, seconds: float) -> str:
    if seconds < 60:
        return _t(lang, "time_s", seconds)
    if seconds < 3600:
        return _t(lang, "time_min", seconds / 60)
    return _t(lang, "time_h", seconds / 3600)


def _or(lang: str, value: Any) -> str:
    """A value as text, or "unknown" for None."""
    return _t(lang, "unknown") if value is None else str(value)


def _number(lang: str, value: Any) -> str:
    """A config number as the config writes it (``0.0005``, ``0.1``, ``1``), or "unknown"."""
    value = number(value)
    return _t(lang, "unknown") if value is None else f"{value:g}"


def _percent(value: float) -> str:
    return f"{value * 100:.2f}%" if value <= 1.0 else f"{value:.2f}%"


def _kind(run: LoadedRun) -> str | None:
    return run.plan.get("device_target") or (run.start_event.device_target if run.start_event else None) \
        or run.backend


def _classes(run: LoadedRun, found: RunArtifacts) -> int | None:
    if found.classes is not None:
        return found.classes
    return whole((found.config or {}).get("num_classes"))


def _outputs(lang: str, classes: int | None) -> str:
    text = _t(lang, "probability")
    return _t(lang, "paren", text, _t(lang, "n_classes", classes)) if classes is not None else text


def _version(run: LoadedRun) -> str:
    version = run.record.versions.get("wrn-launch")
    return f"{PROG} {version}" if isinstance(version, str) else PROG


# -- training ---------------------------------------------------------------------------------------
def _resource(run: LoadedRun, lang: str) -> tuple[str | None, str | None]:
    """(value, why unknown) of the Resource row: devices, hosts, and each host's machine."""
    size, kind = run.world_size, _kind(run)
    if size is None or kind is None:
        return None, _t(lang, "not_in_run_json")
    parts = [_t(lang, "devices", n=size, kind=kind)]
    hosts = [str(h) for h in run.hosts] or sorted(run.record.machines)
    if hosts:
        parts[0] = _t(lang, "paren", parts[0], _t(lang, "hosts", n=len(hosts), names=", ".join(hosts)))
    machines = run.record.machines
    if not machines:
        parts.append(_t(lang, "no_machines", version=_version(run)))
        return _t(lang, "sep").join(parts), None
    for host in hosts or list(machines):
        info = machines.get(host) or {}
        mem = number(info.get("memory_gib"))
        if "cores" in info or "memory_gib" in info or "cpu" in info:  # the launching host
            cpu = info.get("cpu") if isinstance(info.get("cpu"), str) else _t(lang, "cpu_unnamed")
            cores = whole(info.get("cores"))
            text = _t(lang, "machine", cpu=cpu, cores=_or(lang, cores),
                      mem=_t(lang, "unknown") if mem is None else f"{mem:g} GiB")
            parts.append(f"{host}: {text}" if len(hosts) > 1 else text)
        else:
            cores = whole(info.get("usable_cores"))
            parts.append(_t(lang, "machine_remote", host=host, cores=_or(lang, cores)))
    return _t(lang, "sep").join(parts), None


def _finished(run: LoadedRun) -> bool:
    return run.status not in ("running", "lost") and parse_time(run.record.end_time) is not None


def _dataset(run: LoadedRun, found: RunArtifacts, lang: str) -> tuple[str | None, str | None]:
    path = (found.config or {}).get("data_path")
    start = run.start_event
    if not isinstance(path, str) and start is None:
        return None, _t(lang, "no_config")
    if start is None or start.train_images is None or start.test_images is None:
        if not isinstance(path, str):
            return None, _t(lang, "no_start")
        return _t(lang, "paren", path, _t(lang, "counts_unknown")), None
    classes = _classes(run, found)
    text = _t(lang, "dataset", path=path if isinstance(path, str) else _t(lang, "unknown"),
              train=f"{start.train_images:,}", test=f"{start.test_images:,}",
              classes=_or(lang, classes))
    if run.skipped_files:
        text = _t(lang, "paren", text, _t(lang, "skipped", n=run.skipped_files))
    return text, None


def _training_parameters(run: LoadedRun, found: RunArtifacts, lang: str) -> tuple[str | None, str | None]:
    cfg, start = found.config, run.start_event
    if cfg is None:
        return None, _t(lang, "no_config")
    epochs = whole(cfg.get("epoch_size"))
    batch = whole(cfg.get("batch_size"))
    world = run.world_size
    schedule = cfg.get("lr_schedule")
    if schedule == "cosine":
        sched = _t(lang, "cosine", end=_number(lang, cfg.get("lr_end")))
    elif schedule == "step":
        sched = _t(lang, "step", factor=_number(lang, cfg.get("lr_decay_factor")),
                   epochs=cfg.get("lr_decay_epochs"))
    elif schedule == "constant":
        sched = _t(lang, "constant")
    else:
        sched = str(schedule)
    warmup = number(cfg.get("warmup_epochs"))
    if warmup:
        sched += _t(lang, "comma") + _t(lang, "warmup", n=warmup)
    text = _t(lang, "params_line", epochs=_or(lang, epochs),
              steps=_or(lang, start.steps_per_epoch if start else None),
              batch=_or(lang, batch), world=_or(lang, world),
              total=_or(lang, None if batch is None or world is None else batch * world),
              lr=_number(lang, cfg.get("lr")), schedule=sched, momentum=_number(lang, cfg.get("momentum")),
              wd=_number(lang, cfg.get("weight_decay")))
    if start is not None and start.amp_level:
        text += _t(lang, "comma") + _t(lang, "amp", start.amp_level)
    return text, None


def training_table(run: LoadedRun, found: RunArtifacts, lang: str = "en") -> ZooTable:
    """The training performance table of ``run`` in ``lang`` ("en" or "zh")."""
    i = LANGS.index(lang)
    cfg = found.config
    start = run.start_event
    values: dict[str, tuple[str | None, str | None]] = {}
    notes: list[str] = []
    if run.status != "succeeded":
        notes.append(_t(lang, "note_status", status=run.status))

    model = model_title(start.model if start else (cfg or {}).get("model"))
    values["model_version"] = (model, None if model else _t(lang, "no_config"))
    values["resource"] = _resource(run, lang)
    end = parse_time(run.record.end_time)
    values["uploaded_date"] = ((_t(lang, "date", end), None) if _finished(run) and end
                               else (None, _t(lang, "not_finished", run.status)))
    ms_version = run.record.versions.get("mindspore")
    values["mindspore_version"] = ((ms_version, None) if isinstance(ms_version, str)
                                   else (None, _t(lang, "not_in_run_json")))
    values["dataset"] = _dataset(run, found, lang)
    values["training_parameters"] = _training_parameters(run, found, lang)
    if cfg is None:
        values["optimizer"] = (None, _t(lang, "no_config"))
        values["loss_function"] = (None, _t(lang, "no_config"))
    else:
        # wrn.steps builds nn.Momentum and cross entropy whatever the config says; the config
        # only chooses Nesterov and label smoothing
        values["optimizer"] = (_t(lang, "nesterov" if cfg.get("nesterov") is True else "momentum"), None)
        smoothing = number(cfg.get("label_smoothing"))
        loss = _t(lang, "softmax_ce")
        if smoothing:
            loss += _t(lang, "comma") + _t(lang, "smoothing", f"{smoothing:g}")
        values["loss_function"] = (loss, None)
    values["outputs"] = (_outputs(lang, _classes(run, found)), None)

    final = run.final_loss
    values["loss"] = (None, _t(lang, "no_loss")) if final is None else (f"{final:.4g}", None)
    last_epoch = max((r.epoch for r in run.epochs() if r.loss is not None), default=None)
    if final is not None and last_epoch is not None:
        notes.append(_t(lang, "note_loss", epoch=last_epoch))

    size = run.world_size or 1
    timing = step_time(run)
    if timing is None:
        values["speed"] = (None, _t(lang, "no_steps"))
    else:
        values["speed"] = (_t(lang, "speed", n=size, ms=f"{timing.ms:.0f}" if timing.ms >= 10
                              else f"{timing.ms:.2f}"), None)
        span = _t(lang, "note_speed_later" if timing.warm else "note_speed_first",
                  a=timing.first, b=timing.last)
        notes.append(_t(lang, "note_speed", count=timing.count, rank=timing.rank, epochs=span))

    wall = number(run.record.wall_s)
    if run.status in ("running", "lost") or wall is None:
        why = _t(lang, "still_running") if run.status == "running" else _t(lang, "no_wall")
        values["total_time"] = (None, why)
    else:
        values["total_time"] = (_t(lang, "wall", n=size, time=_duration(lang, wall)), None)
        tries = len(run.record.attempts) + 1
        notes.append(_t(lang, "note_time", seconds=wall,
                        attempts=_t(lang, "attempts", tries) if tries > 1 else ""))

    params, how = (start.params, "params_start") if start and start.params is not None \
        else (found.params_built, "params_built")
    if params is None:
        values["parameters"] = (None, _t(lang, "no_start"))
    else:
        values["parameters"] = (_t(lang, "params_m", m=f"{params / 1e6:.2f}", count=params), None)
        notes.append(_t(lang, "note_params", count=params, how=_t(lang, how, prog=PROG)))

    ckpt = found.checkpoint
    if ckpt is None:
        values["checkpoint"] = (None, _t(lang, "no_ckpt"))
    else:
        values["checkpoint"] = (_t(lang, "ckpt", size=fmt_bytes(ckpt.size)), None)
        notes.append(_t(lang, "note_ckpt", path=_inside(run, ckpt.path), size=ckpt.size,
                        how=_t(lang, f"ckpt_{found.checkpoint_how}")))
    version = run.record.versions.get("wrn-launch")
    values["scripts"] = ((_t(lang, "scripts", name=PROG, version=version), None) if isinstance(version, str)
                         else (_t(lang, "scripts_unknown", name=PROG), None))
    rows = [Row(key, labels[i], *values[key]) for key, labels in TRAINING_LABELS.items()]
    return ZooTable(_t(lang, "training"), _kind(run) or _t(lang, "unknown"), rows, notes, lang)


# -- inference ---------------------------------------------------------------------------------------
def _inside(run: LoadedRun, path: Any) -> str:
    """A path of the run, relative to the run directory when inside it."""
    try:
        return str(path.relative_to(run.path))
    except (AttributeError, ValueError):
        return str(path)


def _model_file(run: LoadedRun, found: RunArtifacts, lang: str) -> tuple[str | None, str | None, str | None]:
    """(value, why unknown, note) of "Model for inference": a prediction of an exported model
    (its size), else an exported file in the run directory."""
    from launcher.rundir.artifacts import MODEL_SUFFIXES

    pred = found.predict.data if found.predict else {}
    fmt, size = pred.get("format"), whole(pred.get("model_bytes"))
    if fmt in ("MINDIR", "ONNX", "AIR") and size is not None:
        suffix = next(s for s, f in MODEL_SUFFIXES.items() if f == fmt)[1:]
        where = pred.get("model") if isinstance(pred.get("model"), str) else _inside(run, found.predict.path)
        return (_t(lang, "model_file", size=fmt_bytes(size), suffix=suffix), None,
                _t(lang, "note_model", path=where, size=size))
    if found.exported:
        model = found.exported[0]
        return (_t(lang, "model_file", size=fmt_bytes(model.size), suffix=model.path.suffix.lower()[1:]), None,
                _t(lang, "note_model", path=_inside(run, model.path), size=model.size))
    return None, _t(lang, "no_model_file", prog=PROG), None


def inference_table(run: LoadedRun, found: RunArtifacts, lang: str = "en") -> ZooTable:
    """The inference performance table of ``run`` in ``lang``: from the newest evaluation
    result, else the newest prediction (its accuracy only when its images were labelled)."""
    from launcher.rundir.artifacts import is_training_eval

    i = LANGS.index(lang)
    result = found.eval or found.predict
    unknown = _t(lang, "unknown")
    model_value, model_why, model_note = _model_file(run, found, lang)
    if result is None:
        why = _t(lang, "no_result")
        rows = [Row(key, labels[i], None, why) for key, labels in INFERENCE_LABELS.items()]
        rows[-1] = Row("model_for_inference", rows[-1].label, model_value, model_why)
        notes = [_t(lang, "how_get", prog=PROG, run=run.path)] + ([model_note] if model_note else [])
        return ZooTable(_t(lang, "inference"), unknown, rows, notes, lang)

    data = result.data
    is_predict = result is found.predict and found.eval is None
    own = not is_predict and is_training_eval(result, run.path)
    values: dict[str, tuple[str | None, str | None]] = {}
    notes: list[str] = []
    start = run.start_event
    model = model_title(data.get("model") if isinstance(data.get("model"), str) and not is_predict
                        else (start.model if start else (found.config or {}).get("model")))
    values["model_version"] = (model, None if model else _t(lang, "no_config"))

    world = whole(data.get("world_size"))
    launch = LoadedRun(result.path.parent, result.record) if result.record is not None else None
    if world is None:  # the devices of the launch that evaluated
        world = launch.world_size if launch is not None else run.world_size if own else None
    device = data.get("device_target") if isinstance(data.get("device_target"), str) else None
    if own:  # the training processes evaluated: the training's resources
        values["resource"], kind = _resource(run, lang), _kind(run)
    elif launch is not None:  # wrn-launch eval: its own launch's record
        values["resource"], kind = _resource(launch, lang), _kind(launch)
    elif is_predict:
        values["resource"], kind = (None, _t(lang, "predict_resource")), device
    else:
        kind = device
        devices = _t(lang, "infer_devices", n=world) if world is not None else None
        if devices is None:
            values["resource"] = (None, _t(lang, "kind_unknown"))
        elif isinstance(device, str):
            values["resource"] = (_t(lang, "devices", n=world, kind=device), None)
        else:
            values["resource"] = (_t(lang, "paren", devices, _t(lang, "kind_unknown")), None)

    values["uploaded_date"] = ((_t(lang, "date", result.when), None) if result.when
                               else (None, _t(lang, "not_in_run_json")))
    versions = data.get("versions") if isinstance(data.get("versions"), dict) else \
        launch.record.versions if launch is not None else {}
    own_version = data.get("mindspore") or versions.get("mindspore")
    run_version = run.record.versions.get("mindspore")
    if isinstance(own_version, str):
        values["mindspore_version"] = (own_version, None)
    elif isinstance(run_version, str):
        values["mindspore_version"] = ((run_version, None) if own else
                                       (_t(lang, "paren", run_version, _t(lang, "training_ms")), None))
    else:
        values["mindspore_version"] = (None, _t(lang, "not_in_run_json"))

    # wrn-launch eval names the folder it scored; the training's evaluation scored the test
    # split of the config's data
    folder = data.get("data") if isinstance(data.get("data"), str) else None
    path = folder or (found.config or {}).get("data_path")
    path = path if isinstance(path, str) else _t(lang, "unknown")
    if is_predict:
        images = whole(data.get("images"))
        text = None if images is None else _t(lang, "predict_images", images=f"{images:,}",
                                               source=_inside(run, result.path))
        if text and whole(data.get("unreadable")):
            text += _t(lang, "comma") + _t(lang, "predict_unreadable", whole(data.get("unreadable")))
        values["dataset"] = (text, None if text else _t(lang, "no_result"))
    else:
        total = whole(data.get("total"))
        values["dataset"] = ((_t(lang, "test_folder" if folder else "test_split", path=path, total=f"{total:,}"),
                              None) if total is not None else (None, _t(lang, "no_result")))

    batch = whole(data.get("batch_size"))
    if batch is None and own:  # training evaluates with its own batch_size per device
        batch = whole((found.config or {}).get("batch_size"))
    values["batch_size"] = ((_t(lang, "per_device", batch) if not is_predict else str(batch), None)
                            if batch is not None else (None, _t(lang, "no_config")))
    classes = whole(data.get("classes")) if not is_predict else None
    values["outputs"] = (_outputs(lang, classes if classes is not None else _classes(run, found)), None)

    top1 = number(data.get("top1"))
    if top1 is None:
        values["accuracy"] = (None, _t(lang, "no_accuracy"))
    else:
        correct, total = whole(data.get("correct")), whole(data.get("total"))
        text = "top-1 " + _percent(top1)
        if correct is not None and total is not None:
            text += _t(lang, "paren", "", f"{correct}/{total}")
        if world:
            text = _t(lang, "per_devices", n=world, text=text)
        top5 = number(data.get("top5"))
        if top5 is not None:
            text += _t(lang, "comma") + _t(lang, "top5", _percent(top5))
        values["accuracy"] = (text, None)
        kind_key = "kind_predict" if is_predict else "kind_train_eval" if own else "kind_eval"
        notes.append(_t(lang, "note_result", path=_inside(run, result.path), kind=_t(lang, kind_key)))
    values["model_for_inference"] = (model_value, model_why)
    if model_note:
        notes.append(model_note)
    rows = [Row(key, labels[i], *values[key]) for key, labels in INFERENCE_LABELS.items()]
    return ZooTable(_t(lang, "inference"), kind or unknown, rows, notes, lang)


# -- Markdown ---------------------------------------------------------------------------------------
def _md(text: str) -> str:
    """Text safe in a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown(table: ZooTable) -> str:
    """A table as ModelZoo READMEs write it: a ``###`` heading, the two-column table, the notes."""
    first = TEXT[table.lang]["parameters"]
    lines = [f"### {table.title}", "", f"| {first} | {_md(table.column)} |", "| --- | --- |"]
    lines += [f"| {_md(row.label)} | {_md(row.cell(table.lang))} |" for row in table.rows]
    if table.notes:
        lines += ["", TEXT[table.lang]["notes"], ""] + [f"- {_md(note)}" for note in table.notes]
    return "\n".join(lines) + "\n"


def modelzoo_markdown(run: LoadedRun, found: RunArtifacts, lang: str = "en") -> str:
    """Both tables of ``run`` as Markdown (``wrn-launch report --modelzoo``)."""
    if lang not in LANGS:
        raise ValueError(f"language {lang!r}: choose one of {', '.join(LANGS)}")
    return markdown(training_table(run, found, lang)) + "\n" + markdown(inference_table(run, found, lang))
