"""Training configuration: one frozen dataclass, loaded from YAML plus command-line overrides.

The YAML keeps the ModelZoo names (``data_path``, ``ckpt_path``, ``checkpoint_name``,
``summary_base_dir``, ``batch_size``, ``lr``, ``momentum``, ``epoch_size``) so existing config
files load unchanged, and adds what a real run needs. Every problem (unknown key, wrong type,
value out of range, unreadable file) is raised as one ``ConfigError`` whose message names the
file and line or the flag, says what is wrong and how to fix it; nothing is started before.

Overrides come as ``--set key=value`` (several allowed) or ModelZoo style ``--key=value``;
values are parsed as YAML scalars (``--set lr=0.05``, ``--set nesterov=true``,
``--set lr_decay_epochs=[30,60]``), except for string keys (paths, names), whose value is the
text as typed (``--set data_path=/mnt/rp2k #2`` keeps the ``#2``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from wrn.fileio import write_atomic

#: The sample dataset that ships with the project (see ``wrn.synth``); any other value of
#: ``data_path`` is a directory holding ``train/`` and ``test/``.
BUILTIN_DATA = "builtin:rp2k-sample"

#: The bundled configs: the package's resource folder ``wrn/configs``, a link to the repository's
#: ``configs/`` in a checkout and a copy of its YAML files in an installed wheel.
CONFIG_DIR = Path(os.fspath(resources.files("wrn") / "configs")).resolve()
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


class ConfigError(ValueError):
    """A user-facing configuration problem; ``str()`` is the whole message."""


#: A file name that stays one plain file name on every host: letters (any script), digits,
#: ``_ . - + =``, not starting with ``.`` or ``-`` (so no ``/``, no ``..``, no hidden files).
#: ``checkpoint_name`` must be one; rank 0's files copied back between hosts must be too.
PLAIN_NAME = re.compile(r"[^\W][\w.+=\-]*\Z")


_CHOICES: dict[str, tuple[str, ...]] = {
    "lr_schedule": ("cosine", "step", "constant"),
    "amp_level": ("auto", "O0", "O1", "O2", "O3"),
    "device_target": ("auto", "Ascend", "GPU", "CPU"),
    "mode": ("graph", "pynative"),
    "verify_images": ("quick", "full", "off"),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; see ``configs/wrn50-2_config.yaml`` for comments."""

    # data and outputs (ModelZoo names)
    data_path: str = BUILTIN_DATA
    ckpt_path: str = "./checkpoints"
    checkpoint_name: str = "wrn"
    summary_base_dir: str = "./summary"
    # model
    model: str = "wrn50_2"
    num_classes: int = 2388
    image_size: int = 224
    dropout: float = 0.0
    # optimisation
    batch_size: int = 128
    epoch_size: int = 20
    lr: float = 0.1
    lr_schedule: str = "cosine"
    warmup_epochs: float = 0.0
    lr_end: float = 0.0
    lr_decay_epochs: list = field(default_factory=list)
    lr_decay_factor: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    amp_level: str = "auto"
    loss_scale: float = 1024.0
    # input pipeline
    num_parallel_workers: int = 4
    verify_images: str = "quick"
    crop_min_scale: float = 0.08
    # evaluation and checkpoints
    eval_interval: int = 1
    save_checkpoint_epochs: int = 1
    save_checkpoint_steps: int = 0
    keep_checkpoint_max: int = 5
    # run
    device_target: str = "auto"
    seed: int = 1
    log_interval: int = 10
    mode: str = "graph"
    sink_size: int = 0

    def __post_init__(self) -> None:
        problems = [p for p in (_check_value(f.name, getattr(self, f.name)) for f in fields(self)) if p]
        if problems:
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields, in declaration order (for YAML/JSON output)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def replace(self, **changes: Any) -> TrainConfig:
        """Copy with some fields changed (validated like any other config)."""
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in fields(TrainConfig)}
_TYPES = {f.name: type(f.default) if f.default is not dataclasses.MISSING else list for f in fields(TrainConfig)}


def _type_name(t: type) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}[t]


def _coerce(key: str, value: Any) -> Any:
    """Return ``value`` converted to the field's type, or raise ConfigError (without location)."""
    want = _TYPES[key]
    ok = False
    if want is bool:
        ok = isinstance(value, bool)
    elif want is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif want is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif want is str:
        ok = isinstance(value, str)
        if not ok and isinstance(value, (int, float)) and not isinstance(value, bool):
            value, ok = str(value), True  # e.g. checkpoint_name: 2024
    elif want is list:
        ok = isinstance(value, list)
    if not ok:
        raise ConfigError(f"'{key}' must be {_type_name(want)}, got {value!r} ({type(value).__name__})")
    problem = _check_value(key, value)
    if problem:
        raise ConfigError(problem)
    return value


def _check_value(key: str, value: Any) -> str | None:
    """Range/choice check of one already-typed value; returns a problem text or None."""
    if key in _CHOICES and value not in _CHOICES[key]:
        return (f"'{key}' must be one of {', '.join(_CHOICES[key])}; got {value!r}"
                f"{_did_you_mean(str(value), _CHOICES[key])}")
    positive = {"batch_size", "epoch_size", "num_classes", "image_size", "num_parallel_workers",
                "keep_checkpoint_max", "log_interval", "save_checkpoint_epochs"}
    non_negative = {"lr", "lr_end", "warmup_epochs", "weight_decay", "momentum", "eval_interval",
                    "seed", "loss_scale", "save_checkpoint_steps", "sink_size"}
    if _TYPES.get(key) is float and isinstance(value, float) and not math.isfinite(value):
        return f"'{key}' must be a finite number; got {value!r}"
    if key == "checkpoint_name" and not (PLAIN_NAME.match(value) and ".." not in value):
        return (f"'checkpoint_name' must be a plain file name (letters, digits, '_', '.', '-', "
                f"'+', '=', not starting with '.' or '-', no '/' or '..'); got {value!r}")
    if key in positive and not value > 0:
        return f"'{key}' must be greater than 0; got {value!r}"
    if key in non_negative and not value >= 0:
        return f"'{key}' must be 0 or more; got {value!r}"
    if key == "crop_min_scale" and not 0.0 < value <= 1.0:
        return f"'crop_min_scale' must be in (0, 1]; got {value!r}"
    if key in ("dropout", "label_smoothing") and not 0.0 <= value < 1.0:
        return f"'{key}' must be in [0, 1); got {value!r}"
    if key == "lr_decay_epochs" and not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return f"'lr_decay_epochs' must be a list of positive epoch numbers, e.g. [30, 60]; got {value!r}"
    if key == "lr_decay_factor" and not 0.0 < value <= 1.0:
        return f"'lr_decay_factor' must be in (0, 1]; got {value!r}"
    if key == "image_size" and value < 8:
        return f"'image_size' must be at least 8 pixels; got {value!r}"
    return None


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``known``, or ``""``."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unknown_key(key: str) -> str:
    return f"unknown key '{key}'{_did_you_mean(key, _FIELDS)}"


def _key_nodes(text: str) -> dict[str, tuple[int, Any]]:
    """Map each top-level key of a YAML mapping to (its 1-based line number, its value node)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: (k.start_mark.line + 1, v) for k, v in node.value
            if isinstance(k, yaml.ScalarNode)}


def _duplicate_key(text: str, path: Path) -> str | None:
    """The first top-level key written twice (YAML would silently keep the last), as a problem."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if not isinstance(node, yaml.MappingNode):
        return None
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        line = key.start_mark.line + 1
        if key.value in seen:
            return (f"{path} line {line}: '{key.value}' is also set on line {seen[key.value]}; "
                    f"keep one of the two lines")
        seen[key.value] = line
    return None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a config YAML into a validated dict of known keys (values coerced to field types)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass an existing file with --config "
                          f"(wrn-launch config show NAME -o FILE copies a bundled one, see "
                          f"wrn-launch config list)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML: "
                          f"{getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of key: value lines, "
                          f"not a {type(data).__name__}")
    duplicate = _duplicate_key(text, path)
    if duplicate:
        raise ConfigError(duplicate)
    nodes = _key_nodes(text)
    out: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{path} line {nodes[key][0]}" if key in nodes else str(path)
        key = str(key)
        node = nodes.get(key, (0, None))[1]
        if _TYPES.get(key) is str and not isinstance(value, (str, type(None))) \
                and isinstance(node, yaml.ScalarNode) \
                and node.style is None:
            value = node.value  # the text as written: checkpoint_name: 0x1F is "0x1F", not 31
        if key not in _FIELDS:
            raise ConfigError(f"{where}: {_unknown_key(key)}; the known keys are listed in "
                              f"{CONFIG_DIR / 'wrn50-2_config.yaml'}")
        try:
            out[key] = _coerce(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return out


def parse_override(item: str, flag: str = "--set") -> tuple[str, Any]:
    """Parse ``key=value`` (or ModelZoo ``--key=value``) into (key, typed value).

    Errors quote the argument as the user typed it (``--set 'lr=x'`` or ``'--lr=x'``).
    """
    if item.startswith("--"):
        flag, item = "", item[2:]
    if "=" not in item:
        raise ConfigError(f"{_shown(flag, item)}: expected key=value, e.g. --set lr=0.05")
    key, raw = item.split("=", 1)
    key = key.strip().replace("-", "_")
    if key not in _FIELDS:
        raise ConfigError(f"{_shown(flag, item)}: {_unknown_key(key)}")
    if _TYPES[key] is str:
        value: Any = raw  # paths and names are text as typed: no YAML comments, numbers, lists
    else:
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if value is None:
            value = raw
    try:
        return key, _coerce(key, value)
    except ConfigError as exc:
        raise ConfigError(f"{_shown(flag, item)}: {exc}") from None


def _shown(flag: str, item: str) -> str:
    return f"{flag} {item!r}" if flag else repr("--" + item)


def split_modelzoo_args(argv: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split argv into (ModelZoo ``--key=value`` overrides, other args).

    The overrides are returned as ``--key=value`` strings, ready for ``load_config``.

    Only ``--name=value`` forms whose name is a config key are taken, so the caller's own
    flags are left alone. ``--data_path /x`` (space separated) is also accepted for config keys.
    """
    overrides: list[str] = []
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            key = name.replace("-", "_")
            if key in _FIELDS and name not in ("config",):
                if eq:
                    overrides.append(f"--{key}={value}")
                    i += 1
                    continue
                if i + 1 < len(args) and not args[i + 1].startswith("--"):
                    overrides.append(f"--{key}={args[i + 1]}")
                    i += 2
                    continue
        rest.append(arg)
        i += 1
    return overrides, rest


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = (),
                flag: str = "--set") -> TrainConfig:
    """Load ``path`` (default: ``configs/default.yaml``) and apply overrides in order.

    Each override is ``key=value`` (reported as coming from ``flag``) or ``--key=value``.
    """
    values = load_yaml(path if path is not None else DEFAULT_CONFIG)
    for item in overrides:
        key, value = parse_override(item, flag)
        values[key] = value
    try:
        return TrainConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{path or DEFAULT_CONFIG}: {exc}") from None


def dump_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (keys in declaration order), atomically."""
    write_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))


def bundled_configs() -> dict[str, Any]:
    """The bundled configs, name (file name without ``.yaml``) -> resource, sorted by name."""
    folder = resources.files("wrn") / "configs"
    found = {entry.name[:-len(".yaml")]: entry for entry in folder.iterdir()
             if entry.name.endswith(".yaml") and entry.is_file()}
    return dict(sorted(found.items()))


def bundled_config_text(name: str) -> bytes:
    """The bytes of bundled config ``name`` (``default`` or ``default.yaml``); ``ConfigError``
    naming the bundled ones when there is no such config."""
    configs = bundled_configs()
    stem = name[:-len(".yaml")] if name.endswith(".yaml") else name
    if stem not in configs:
        raise ConfigError(f"no bundled config {name!r}{_did_you_mean(stem, configs)}; the bundled "
                          f"configs are {', '.join(configs) or 'missing from this installation'}")
    return configs[stem].read_bytes()


def config_keys() -> list[str]:
    """All known config keys, in declaration order."""
    return list(_FIELDS)
