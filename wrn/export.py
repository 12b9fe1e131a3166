"""Export a trained checkpoint for inference: ``wrn-launch export CKPT --format MINDIR|ONNX|AIR``.

The model is rebuilt from the run's config (``RUN/config.yaml`` next to ``RUN/checkpoints/``
is found by itself; ``--config`` overrides), the checkpoint is loaded and verified (every
parameter present, shapes equal), and MindSpore's ``export`` writes the file for a fixed input
of ``(batch, 3, image_size, image_size)`` float32 images.

* MINDIR works on every backend; the file reloads with ``mindspore.load`` + ``nn.GraphCell``.
* ONNX works for these models because their pooling is a mean over H and W (ReduceMean) and
  the stem max-pool is an explicit Pad + 'valid' pool; opset 11 as MindSpore writes it.
* AIR is built by the Ascend toolkit, so it needs an Ascend host: elsewhere it is refused
  before anything is loaded.

MindSpore writes exported files read-only (mode 0400) and may refuse or half-write when a
file of that name exists; here the file is written under a temporary name in the target's
folder and renamed over the old one, so re-exporting replaces it atomically.
``verify=True`` reloads the result (MINDIR with MindSpore; ONNX with onnxruntime when installed)
and compares it with the checkpoint's own predictions on random images.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wrn.config import DEFAULT_CONFIG, ConfigError, TrainConfig, load_config
from wrn.fileio import expand_user

#: Export formats and the file suffix MindSpore gives each.
FORMATS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}


class ExportError(ConfigError):
    """A checkpoint that cannot be exported as asked; ``str()`` is one paragraph (what, fix)."""


@dataclass(frozen=True)
class ExportResult:
    """What was written: path, format, model, input shape, size, time; verification numbers
    (``max_abs_diff`` between the file's and the checkpoint's logits, ``same_classes``) when
    ``verify`` was asked for and possible, else None."""

    path: Path
    format: str
    model: str
    num_classes: int
    input_shape: tuple[int, int, int, int]
    bytes: int
    seconds: float
    replaced: bool
    config: str
    max_abs_diff: float | None = None
    same_classes: bool | None = None
    verify_note: str | None = None


def normalise_format(text: str) -> str:
    """``"mindir"`` -> ``"MINDIR"``; anything not in ``FORMATS`` is an ``ExportError``."""
    fmt = str(text).strip().upper()
    if fmt not in FORMATS:
        raise ExportError(f"--format {text!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def find_run_config(ckpt: str | os.PathLike) -> Path | None:
    """The ``config.yaml`` of the run a checkpoint belongs to (``RUN/checkpoints/x.ckpt`` ->
    ``RUN/config.yaml``, or one beside the file), None when there is none."""
    ckpt = Path(ckpt).resolve()
    for candidate in (ckpt.parent / "config.yaml", ckpt.parent.parent / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def output_path(ckpt: str | os.PathLike, fmt: str, output: str | os.PathLike | None = None) -> Path:
    """Where the export goes: ``output`` (the format's suffix added when it has none), else
    ``<checkpoint name>.<suffix>`` in the current directory (as ModelZoo's export.py does)."""
    suffix = FORMATS[fmt]
    if output is None:
        return Path.cwd() / (Path(ckpt).stem + suffix)
    out = expand_user(output)
    if out.is_dir():
        return (out / (Path(ckpt).stem + suffix)).resolve()
    if out.suffix.lower() != suffix:
        out = out.with_name(out.name + suffix)
    return out.resolve()


def check_format_supported(fmt: str, device_target: str) -> None:
    """Refuse formats this host's backend cannot write (AIR needs Ascend), before any work."""
    if fmt == "AIR" and device_target != "Ascend":
        raise ExportError(f"--format AIR needs an Ascend host (MindSpore builds AIR files with the "
                          f"Ascend toolkit) and this one runs {device_target}; export MINDIR here and "
                          f"convert it on an Ascend host with ATC, or run this export there")


def _load_cfg(ckpt: Path, config: str | None, overrides: Sequence[str]) -> tuple[TrainConfig, str]:
    if config is not None:
        return load_config(config, list(overrides)), config
    found = find_run_config(ckpt)
    if found is not None:
        return load_config(found, list(overrides)), str(found)
    return load_config(None, list(overrides)), str(DEFAULT_CONFIG)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def export_checkpoint(ckpt: str | os.PathLike, fmt: str = "MINDIR", *, config: str | None = None,
                      overrides: Sequence[str] = (), output: str | os.PathLike | None = None,
                      batch_size: int = 1, verify: bool = False,
                      device_target: str | None = None) -> ExportResult:
    """Export ``ckpt`` to ``fmt`` (MINDIR, ONNX or AIR); return what was written.

    ``config`` (default: the checkpoint's run config, else the built-in default) and
    ``overrides`` give the model, class count and image size. ``device_target`` (default: this
    host's, detected) decides what can be written. Raises ``ExportError`` (one paragraph) for
    bad input, an unsupported format, a checkpoint that does not fit the model, or an export
    MindSpore refuses; nothing is written then.
    """
    from wrn.dist import prepare_process_env, resolve_device_target

    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise ExportError(f"checkpoint {ckpt}: no such file; pass a .ckpt written by training "
                          f"(e.g. RUN_DIR/checkpoints/<name>.ckpt)")
    fmt = normalise_format(fmt)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ExportError(f"--batch-size {batch_size!r}: must be a whole number >= 1")
    target = device_target or resolve_device_target("auto")
    check_format_supported(fmt, target)
    cfg, cfg_source = _load_cfg(ckpt, config, overrides)
    out = output_path(ckpt, fmt, output)
    if not out.parent.is_dir():
        raise ExportError(f"-o {output}: folder {out.parent} does not exist; create it or choose "
                          f"another output path")

    if "mindspore" not in sys.modules:  # these settings only matter before MindSpore loads
        prepare_process_env()
    import mindspore as ms
    import numpy as np

    from wrn import checkpoint

    t0 = time.time()
    ms.set_device(target)
    ms.set_context(mode=ms.GRAPH_MODE)
    net = checkpoint.load_network(ckpt, cfg, cfg_source, ExportError)
    shape = (batch_size, 3, cfg.image_size, cfg.image_size)
    tmp_base = out.parent / f".{out.name}.{os.getpid()}.tmp"
    written = None
    try:
        try:
            _write(net, ms.Tensor(np.zeros(shape, np.float32)), str(tmp_base), fmt)
        except Exception as exc:  # MindSpore raises RuntimeError/ValueError/TypeError here
            raise ExportError(f"MindSpore could not export {cfg.model} as {fmt}: {_first_line(exc)}"
                              + ("; export MINDIR instead" if fmt != "MINDIR" else "")) from None
        for candidate in (Path(str(tmp_base) + FORMATS[fmt]), tmp_base):
            if candidate.is_file():
                written = candidate
                break
        if written is None:
            raise ExportError(f"MindSpore reported success but wrote no {fmt} file for {out}; "
                              f"check that {out.parent} is writable and has free space")
        replaced = out.exists()
        os.replace(written, out)
        written = None
    finally:
        for leftover in (written, Path(str(tmp_base) + FORMATS[fmt]), tmp_base):
            if leftover is not None and leftover.exists():
                try:
                    leftover.unlink()
                except OSError:
                    pass
    result = ExportResult(path=out, format=fmt, model=cfg.model, num_classes=cfg.num_classes,
                          input_shape=shape, bytes=out.stat().st_size,
                          seconds=round(time.time() - t0, 3), replaced=replaced, config=cfg_source)
    if verify:
        result = _verify(result, net, shape)
    return result


def _write(net, example, file_name: str, fmt: str) -> None:
    """MindSpore's exporter for ``fmt``: ``mindspore.onnx.export`` for ONNX where it exists
    (``export(file_format='ONNX')`` is deprecated there), with the input named ``images`` and
    the output ``logits``; ``mindspore.export`` otherwise."""
    import mindspore as ms

    if fmt == "ONNX":
        try:
            from mindspore.onnx import export as onnx_export
        except ImportError:
            onnx_export = None
        if onnx_export is not None:
            onnx_export(net, example, file_name=file_name, input_names=["images"],
                        output_names=["logits"])
            return
    ms.export(net, example, file_name=file_name, file_format=fmt)


def predict_mindir(path: str | os.PathLike, images):
    """Logits of an exported MINDIR for ``images`` (a float32 NCHW numpy array of the exported
    shape), through ``mindspore.load`` + ``nn.GraphCell``."""
    import mindspore as ms

    cell = ms.nn.GraphCell(ms.load(str(path)))
    return cell(ms.Tensor(images)).asnumpy()


def predict_onnx(path: str | os.PathLike, images):
    """Logits of an exported ONNX file for ``images``, through onnxruntime (ImportError if it
    is not installed: ``pip install onnxruntime``)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def _verify(result: ExportResult, net, shape: tuple[int, ...]) -> ExportResult:
    """Compare the exported file's logits with the network's on random images."""
    import dataclasses

    import mindspore as ms
    import numpy as np

    images = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = net(ms.Tensor(images)).asnumpy()
    try:
        if result.format == "MINDIR":
            got = predict_mindir(result.path, images)
        elif result.format == "ONNX":
            got = predict_onnx(result.path, images)
        else:
            return dataclasses.replace(result, verify_note="AIR files are not reloaded here")
    except ImportError:
        return dataclasses.replace(result, verify_note="onnxruntime is not installed "
                                   "(pip install onnxruntime), so the ONNX file was not checked")
    diff = float(np.max(np.abs(got - expected)))
    same = bool(np.array_equal(got.argmax(axis=1), expected.argmax(axis=1)))
    return dataclasses.replace(result, max_abs_diff=diff, same_classes=same)


def describe(result: ExportResult) -> list[str]:
    """Human lines about an export (what the CLI prints)."""
    lines = [f"{'replaced' if result.replaced else 'wrote'} {result.path} ({result.format}, "
             f"{result.bytes / 1e6:.2f} MB, {result.seconds:.1f} s)",
             f"model {result.model}, {result.num_classes} classes, input "
             f"{'x'.join(map(str, result.input_shape))} float32 NCHW (config: {result.config})"]
    if result.max_abs_diff is not None:
        lines.append(f"verified: same classes as the checkpoint: {result.same_classes}, "
                     f"max |logit difference| {result.max_abs_diff:.3g}")
    elif result.verify_note:
        lines.append(f"not verified: {result.verify_note}")
    return lines
