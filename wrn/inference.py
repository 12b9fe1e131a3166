"""The model predict runs: a checkpoint, an exported MINDIR or an ONNX file, loaded behind one
interface, ``Model.logits(batch) -> ndarray``.

* **The model file**: ``model_kind`` picks the kind from the suffix; ``find_run_dir`` the run
  directory the file belongs to (where its ``config.yaml`` and ``classes.json`` are).
* **Loading**: a checkpoint is rebuilt from its run's config (``load_checkpoint_model``), a
  MINDIR runs through ``mindspore.load`` + ``nn.GraphCell`` (``load_mindir_model``), an ONNX
  file through onnxruntime, an optional extra: ``pip install 'wrn-launch[onnx]'``
  (``load_onnx_model``). An exported file's batch, image size and class count come from its
  input and output shapes.
* **Checks**: ``load_model`` loads any kind and checks an exported model against its config
  (image size, class count); ``fit_class_index`` checks the class index against the model.

Import cost: the standard library and light ``wrn`` modules at the top; MindSpore and
onnxruntime are imported when a model is loaded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wrn.labelfiles import ClassIndex, PredictError

#: Model file suffixes (lower case) and the kind each is.
MODEL_KINDS = {".ckpt": "checkpoint", ".mindir": "MINDIR", ".onnx": "ONNX"}


def model_kind(path: str | os.PathLike) -> str:
    """``"checkpoint"``, ``"MINDIR"`` or ``"ONNX"`` from the suffix; ``PredictError`` if the
    file is missing or has another suffix."""
    path = Path(path)
    kind = MODEL_KINDS.get(path.suffix.lower())
    if kind is None:
        raise PredictError(f"MODEL {path}: unknown model file type {path.suffix or '(no suffix)'!r}; "
                           f"pass a checkpoint (.ckpt), an exported MINDIR (.mindir) or an ONNX "
                           f"file (.onnx), e.g. from `wrn-launch export CKPT --format MINDIR`")
    if not path.is_file():
        where = "is a folder" if path.is_dir() else "does not exist"
        raise PredictError(f"MODEL {path} {where}; pass the path of a {kind} file "
                           f"(a checkpoint is RUN_DIR/checkpoints/<name>.ckpt)")
    return kind


def find_run_dir(model: str | os.PathLike) -> Path | None:
    """The run directory a model file belongs to: the first of its folder and that folder's
    parent that holds ``classes.json`` or ``config.yaml`` (``RUN/checkpoints/x.ckpt`` -> RUN,
    ``RUN/x.mindir`` -> RUN, ``RUN/export/x.onnx`` -> RUN), else None."""
    model = Path(model).resolve()
    for folder in (model.parent, model.parent.parent):
        if (folder / "classes.json").is_file() or (folder / "config.yaml").is_file():
            return folder
    return None


@dataclass
class Model:
    """A loaded model: ``logits(images)`` maps a float32 ``[B, 3, S, S]`` batch to ``[B, C]``.

    ``batch`` is the fixed batch dimension of an exported file (None: any batch works);
    ``image_size`` S and ``num_classes`` C come from the file's shapes (exported) or the config
    (checkpoint); ``config`` is the config file used or checked against, if any.
    """

    path: Path
    format: str
    image_size: int
    num_classes: int
    batch: int | None
    run: Callable[[Any], Any]
    config: str | None = None

    def logits(self, images):
        return self.run(images)


def _setup_mindspore(device_target: str, device_id: int) -> None:
    if "mindspore" not in sys.modules:  # the CPU settings only take effect before it loads
        from wrn.dist import prepare_process_env

        prepare_process_env()
    import mindspore as ms

    if device_target == "CPU":
        ms.set_device("CPU")
    else:
        ms.set_device(device_target, device_id)
    ms.set_context(mode=ms.GRAPH_MODE)


def first_error_line(exc: BaseException) -> str:
    """The line of a (MindSpore) error message that says what went wrong: MindSpore's dataset
    errors start with a banner and put the reason on a line ``[ERROR] ...`` or ``[Internal
    ERROR] ...``, followed by advice about a dumped file (see ``wrn.predict._private_cwd``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("[ERROR]", "[Internal ERROR]")):
            while line.startswith(("[ERROR]", "[Internal ERROR]")):
                line = line.split("]", 1)[1].strip()
            return line.split(" Dump the abnormal image")[0]
    return lines[0] if lines else type(exc).__name__


def load_checkpoint_model(path: Path, cfg, cfg_source: str, device_target: str = "CPU",
                          device_id: int = 0) -> Model:
    """The network of ``cfg`` with the checkpoint's parameters, in GRAPH mode."""
    _setup_mindspore(device_target, device_id)
    import mindspore as ms

    from wrn.checkpoint import load_network

    net = load_network(path, cfg, cfg_source, PredictError)
    return Model(path, "checkpoint", cfg.image_size, cfg.num_classes, None,
                 lambda images: net(ms.Tensor(images)).asnumpy(), cfg_source)


def _image_input(path: Path, kind: str, dims: Sequence, out_dims: Sequence) -> tuple[int | None, int, int]:
    """(fixed batch or None, image size, classes) from an exported file's input and output
    shapes; ``PredictError`` unless they are ``[B, 3, S, S]`` and ``[B, C]``."""
    def fixed(d) -> int | None:
        return d if isinstance(d, int) and d > 0 else None

    dims, out_dims = list(dims), list(out_dims)
    if (len(dims) != 4 or fixed(dims[1]) != 3 or fixed(dims[2]) is None or dims[2] != dims[3]
            or len(out_dims) != 2 or fixed(out_dims[1]) is None):
        raise PredictError(f"MODEL {path}: its input is {dims} and its output {out_dims}, not the "
                           f"[batch, 3, size, size] images -> [batch, classes] of an image "
                           f"classifier; export one with `wrn-launch export CKPT --format {kind}`")
    return fixed(dims[0]), dims[2], out_dims[1]


def load_mindir_model(path: Path, device_target: str = "CPU", device_id: int = 0) -> Model:
    """An exported MINDIR through ``mindspore.load`` + ``nn.GraphCell``; its input and output
    shapes are read from the file's graph (``mind_ir`` protobuf)."""
    _setup_mindspore(device_target, device_id)
    import mindspore as ms
    from mindspore.train import mind_ir_pb2

    proto = mind_ir_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
        dims = list(proto.graph.input[0].tensor[0].dims)
        out_dims = list(proto.graph.output[0].tensor[0].dims)
    except Exception as exc:  # protobuf's DecodeError, or a graph without inputs
        raise PredictError(f"MODEL {path} is not a readable MINDIR file ({first_error_line(exc)}); "
                           f"export it again with `wrn-launch export CKPT --format MINDIR`") from None
    batch, size, classes = _image_input(path, "MINDIR", dims, out_dims)
    try:
        cell = ms.nn.GraphCell(ms.load(str(path)))
    except Exception as exc:  # MindSpore raises RuntimeError/ValueError on files it cannot load
        raise PredictError(f"MODEL {path}: MindSpore cannot load it ({first_error_line(exc)}); export it "
                           f"again with `wrn-launch export CKPT --format MINDIR`") from None
    return Model(path, "MINDIR", size, classes, batch, lambda images: cell(ms.Tensor(images)).asnumpy())


def load_onnx_model(path: Path) -> Model:
    """An ONNX file through onnxruntime (CPU); ``PredictError`` if onnxruntime is missing."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise PredictError(f"MODEL {path}: ONNX files are run with onnxruntime, which is not "
                           f"installed; pip install 'wrn-launch[onnx]' (or pip install onnxruntime), "
                           f"or predict with the MINDIR or the checkpoint instead") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        raise PredictError(f"MODEL {path} is not a readable ONNX file ({first_error_line(exc)}); export "
                           f"it again with `wrn-launch export CKPT --format ONNX`") from None
    feed, out = session.get_inputs()[0], session.get_outputs()[0]
    batch, size, classes = _image_input(path, "ONNX", feed.shape, out.shape)
    name = feed.name
    return Model(path, "ONNX", size, classes, batch, lambda images: session.run(None, {name: images})[0])


def load_model(path: Path, kind: str, cfg=None, cfg_file: str | os.PathLike | None = None,
               device_target: str = "CPU", device_id: int = 0) -> Model:
    """Load the model file ``path`` of ``kind`` (``model_kind``): a checkpoint is built from
    ``cfg`` (required), read from ``cfg_file``; an exported file must take ``cfg``'s image size
    and output its class count when a config is given. ``PredictError`` when it does not fit."""
    if kind == "checkpoint":
        model = load_checkpoint_model(path, cfg, str(cfg_file), device_target, device_id)
    elif kind == "MINDIR":
        model = load_mindir_model(path, device_target, device_id)
    else:
        model = load_onnx_model(path)
    model.config = str(cfg_file) if cfg_file else None
    if cfg is not None and kind != "checkpoint":
        if model.image_size != cfg.image_size:
            raise PredictError(f"MODEL {path} takes {model.image_size}x{model.image_size} images but "
                               f"the config {cfg_file} says image_size {cfg.image_size}: the model was "
                               f"exported from another run; pass that run's --config, or re-export "
                               f"this run's checkpoint (wrn-launch export CKPT --format {kind})")
        if model.num_classes != cfg.num_classes:
            raise PredictError(f"MODEL {path} outputs {model.num_classes} classes but the config "
                               f"{cfg_file} says num_classes {cfg.num_classes}: the model was exported "
                               f"from another run; pass that run's --config and --classes, or re-export "
                               f"this run's checkpoint (wrn-launch export CKPT --format {kind})")
    return model


def fit_class_index(model: Model, index: ClassIndex) -> ClassIndex:
    """``index`` with one name per output of ``model`` (numbered names for a label file
    without names); ``PredictError`` when the counts differ."""
    index = index.with_count(model.num_classes)
    if len(index.names) != model.num_classes:
        raise PredictError(f"MODEL {model.path} outputs {model.num_classes} classes but the class index "
                           f"{index.source} has {len(index.names)}: pass the --classes of the run the "
                           f"model comes from (its RUN_DIR/classes.json), or export this run's "
                           f"checkpoint again")
    return index
