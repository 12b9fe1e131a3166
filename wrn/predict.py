"""Score images with a trained model: ``wrn-launch predict MODEL IMAGES...`` (the worker-side part).

``prepare`` resolves a job: the model (``wrn.inference``: a checkpoint, an exported MINDIR or
an ONNX file), its class index (``wrn.labelfiles``: ``classes.json`` of the training run or
``--classes``) and config, and the images (``wrn.imagefiles``: files and folders, labelled
splits). This module then preprocesses and scores them and writes the results.

* **Preprocessing**: evaluation's image operations, ``wrn.pipeline.eval_image_ops``, run
  eagerly per image, after the same quick file check as the scan (``check_image_quick``), so
  a labelled test split scores the same images with the same pixels as ``python -m wrn.eval``.
  An image that fails either is listed with the reason and skipped, never fatal.
* **Batches**: MINDIR and ONNX files exported by MindSpore have a fixed batch dimension
  (``wrn-launch export --batch-size``); batches have exactly that size, the last one padded.
  Checkpoints take any batch (``batch_size``, default ``DEFAULT_BATCH``). A helper thread
  decodes the next images while the model runs (``score``).
* **Results**: top-K classes and probabilities (softmax of the logits) per image, accuracy when
  labelled (``Predictions``), as JSON or CSV (``to_json``, ``to_csv``), and a summary record
  ``RUN/predict/<UTC stamp>.json`` when the model belongs to a run directory (``run_record``).

``python -m wrn.predict accuracy RESULT.json`` prints ModelZoo's accuracy line ("Total data: N,
top1 accuracy: X, top5 accuracy: Y.") of a ``-o RESULT.json`` with labels, which
``scripts/run_infer_310.sh`` writes into ``acc.log``.

``PredictError`` (defined in ``wrn.labelfiles``) is re-exported here.

Import cost: the standard library and light ``wrn`` modules at the top; numpy, MindSpore and
onnxruntime are imported when images are scored or a model is loaded.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wrn.imagefiles import ImageSet, find_images
from wrn.inference import Model, find_run_dir, first_error_line, fit_class_index, load_model, model_kind
from wrn.labelfiles import ClassIndex, PredictError, read_class_index

#: Batch size for models that take any (checkpoints) when none is given.
DEFAULT_BATCH = 32
#: Top-K when none is given.
DEFAULT_TOP_K = 5
#: Where a run keeps its predict records (``RUN/predict/<stamp>.json``).
RECORD_DIR = "predict"


# --------------------------------------------------------------------------- preparing a job


@dataclass
class Job:
    """What ``prepare`` resolved: the model (loaded), the class index, the images, the batch
    size, top-K, the run directory (None when the model belongs to none)."""

    model: Model
    classes: ClassIndex
    images: ImageSet
    batch_size: int
    top_k: int
    run_dir: Path | None
    notes: list[str] = field(default_factory=list)


def prepare(model_path: str | os.PathLike, images: Sequence[str | os.PathLike], *,
            classes: str | None = None, config: str | None = None, batch_size: int | None = None,
            top_k: int = DEFAULT_TOP_K, device_target: str = "auto", device_id: int = 0) -> Job:
    """Check the input, find the images, load the model and check that it fits its class
    index and config; ``PredictError`` (one paragraph) for anything that does not fit."""
    from wrn.config import load_config
    from wrn.dist import resolve_device_target

    for flag, value in (("--top-k", top_k), ("--batch-size", batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise PredictError(f"{flag} {value!r}: must be a whole number >= 1")
    path = Path(model_path)
    kind = model_kind(path)
    run_dir = find_run_dir(path)
    if config is not None and not Path(config).is_file():
        raise PredictError(f"--config {config}: no such file; pass the run's config.yaml")
    if kind == "checkpoint":
        from wrn.eval import find_class_index
        from wrn.export import find_run_config

        cfg_file = config or find_run_config(path)
        index_file = find_class_index(path, classes)
        if cfg_file is None or index_file is None:
            missing = " and ".join(what for what, got in (("config.yaml (--config)", cfg_file),
                                                         ("classes.json (--classes)", index_file))
                                   if got is None)
            raise PredictError(f"MODEL {path}: no {missing} found beside the checkpoint or in its "
                               f"run directory (RUN_DIR/checkpoints/<name>.ckpt -> RUN_DIR/config.yaml, "
                               f"RUN_DIR/classes.json); pass --config RUN_DIR/config.yaml and "
                               f"--classes RUN_DIR/classes.json of the run that trained it")
    else:
        cfg_file = config or (str(run_dir / "config.yaml") if run_dir and (run_dir / "config.yaml").is_file()
                              else None)
        index_file = classes or (str(run_dir / "classes.json") if run_dir and (run_dir / "classes.json").is_file()
                                 else None)
        if index_file is None:
            raise PredictError(f"MODEL {path}: no class names; pass --classes RUN_DIR/classes.json of "
                               f"the run the model was exported from (found by itself when the model "
                               f"file lies in the run directory or one folder below it)")
    index = read_class_index(index_file)
    cfg = load_config(cfg_file) if cfg_file else None
    if cfg is not None and index.names is not None and len(index.names) != cfg.num_classes:
        raise PredictError(f"the class index {index.source} has {len(index.names)} classes but the "
                           f"config {cfg_file} says num_classes {cfg.num_classes}; pass the "
                           f"--classes and --config of the same run")
    found = find_images(images, index)
    target = resolve_device_target(device_target)
    model = load_model(path, kind, cfg, cfg_file, target, device_id)
    index = fit_class_index(model, index)
    if model.batch is not None:
        if batch_size is not None and batch_size != model.batch:
            raise PredictError(f"--batch-size {batch_size}: MODEL {path} was exported for batches of "
                               f"exactly {model.batch} image(s) (input {model.batch}x3x{model.image_size}x"
                               f"{model.image_size}); leave --batch-size out to use {model.batch}, or "
                               f"re-export with `wrn-launch export CKPT --format {kind} --batch-size "
                               f"{batch_size}`")
        batch = model.batch
    else:
        batch = min(batch_size or DEFAULT_BATCH, len(found.files))
    return Job(model, index, found, batch, min(top_k, model.num_classes), run_dir, list(found.notes))


# --------------------------------------------------------------------------- scoring


class UnreadableImage(Exception):
    """An image file that fails the quick check or cannot be decoded; ``str()`` is the reason."""


class Preprocess:
    """Evaluation's image operations on one file: the scan's quick check (``check_image_bytes``,
    the verdict of ``check_image_quick``), then ``wrn.pipeline.eval_image_ops`` run eagerly (as
    one ``Compose``). The file is read once for both."""

    def __init__(self, image_size: int) -> None:
        import mindspore.dataset.transforms as T
        import numpy as np

        from wrn.pipeline import eval_image_ops

        self._ops = T.Compose(eval_image_ops(image_size))
        self._frombuffer = np.frombuffer
        self._uint8 = np.uint8
        self._reset = None

    def __call__(self, path: str):
        from wrn.images import check_image_bytes

        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise UnreadableImage(f"unreadable: {exc.strerror or exc}") from None
        problem = check_image_bytes(data)
        if problem:
            raise UnreadableImage(problem)
        try:
            return self._ops(self._frombuffer(data, dtype=self._uint8))
        except Exception as exc:  # MindSpore raises RuntimeError (sometimes others) per image
            self._clear_decoder()
            raise UnreadableImage(f"cannot be decoded: {first_error_line(exc)}") from None

    def _clear_decoder(self) -> None:
        """Decode a tiny valid JPEG until it works. MindSpore 2.10's JPEG decoder keeps a
        failed image's libjpeg error in a per-thread list that only the next JPEG decode of
        that thread reads: without this, the good image after a corrupt one fails too ("JPEG
        datastream contains no image"; measured: one decode clears it)."""
        import mindspore.dataset.vision as V

        if self._reset is None:
            from PIL import Image

            out = io.BytesIO()
            Image.new("RGB", (8, 8)).save(out, "JPEG")
            self._reset = (V.Decode(), self._frombuffer(out.getvalue(), dtype=self._uint8))
        decode, tiny = self._reset
        for _ in range(3):
            try:
                decode(tiny)
                return
            except Exception:  # the stale error, reported by this decode and then cleared
                continue


@contextmanager
def _private_cwd():
    """Run the block in a fresh temporary folder as the working directory, then go back and
    delete it. MindSpore's ``Decode`` writes every image it fails to decode to
    ``./abnormal_image.<ext>`` in the current directory (unconditionally, in its C++ code),
    which would litter the user's folder and overwrite a file of that name there."""
    import shutil
    import tempfile

    home = os.getcwd()
    scratch = tempfile.mkdtemp(prefix="wrn-predict-")
    os.chdir(scratch)
    try:
        yield
    finally:
        os.chdir(home)
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class Predictions:
    """The scores: per scored image its path, label (-1: unknown), top-K class indices and
    probabilities (softmax of the logits, float64); the files skipped with the reason; the
    scoring's seconds (preprocessing and model, not loading)."""

    files: list[str]
    labels: Any  # int32 [N]
    top_idx: Any  # int64 [N, K]
    top_p: Any  # float64 [N, K]
    unreadable: list[tuple[str, str]]
    classes: tuple[str, ...]
    seconds: float

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def imgs_per_s(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def accuracy(self) -> dict[str, Any] | None:
        """Over the images with a label: ``correct``, ``total``, ``top1``; ``topk_correct``
        and ``topk`` (label among the top K); ``per_class`` ``[(index, correct, total)]`` of
        the classes that have images. None when no image has a label."""
        import numpy as np

        known = self.labels >= 0
        total = int(known.sum())
        if not total:
            return None
        labels, top = self.labels[known], self.top_idx[known]
        hit1 = top[:, 0] == labels
        hitk = (top == labels[:, None]).any(axis=1)
        per_class = [(int(c), int(hit1[labels == c].sum()), int((labels == c).sum()))
                     for c in np.unique(labels)]
        return {"correct": int(hit1.sum()), "total": total, "top1": float(hit1.sum()) / total,
                "topk": int(top.shape[1]), "topk_correct": int(hitk.sum()),
                "topk_accuracy": float(hitk.sum()) / total, "per_class": per_class}


#: Logit rows gathered before softmax and top-K run on them (numpy's per-call cost would
#: otherwise dominate for a model exported at batch 1).
CHUNK_ROWS = 256
#: Groups of batches decoded ahead of the model, and the images per group (at least one
#: batch): a group, not each batch, passes between the threads, so a model exported at batch
#: 1 does not pay a thread hand-off per image.
PREFETCH = 2
GROUP_IMAGES = 32


def score(job: Job, on_progress: Callable[[int], None] | None = None) -> Predictions:
    """Preprocess and score ``job``'s images in batches of ``job.batch_size`` (the last one
    padded with zeros, so the model always sees one shape); ``on_progress(n)`` after every
    ``n`` images handled (scored or skipped).

    A helper thread reads and decodes the next batches while the model runs on this one
    (onnxruntime and MindSpore release the GIL while they compute): measured on 2 cores, this
    is what keeps predict at the speed of a bare decode-and-run loop despite its extra work
    per image (file check, top-K, the outputs).
    """
    import queue
    import threading

    import numpy as np

    model, files = job.model, job.images.files
    size, k, b = model.image_size, job.top_k, job.batch_size
    preprocess = Preprocess(size)
    absolute = [os.path.abspath(f) for f in files]  # the loop runs in another folder
    unreadable = list(job.images.skipped)
    batches: queue.Queue = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    group = b * max(1, -(-GROUP_IMAGES // b))  # whole batches

    def decode() -> None:
        """The helper thread: ``(positions, images, skipped)`` items of up to ``group``
        images, then None (or the error)."""
        try:
            buf, positions, skipped = np.zeros((group, 3, size, size), dtype=np.float32), [], 0
            for i, path in enumerate(absolute):
                try:
                    buf[len(positions)] = preprocess(path)
                except UnreadableImage as exc:
                    unreadable.append((files[i], str(exc)))
                    skipped += 1
                    continue
                positions.append(i)
                if len(positions) == group:
                    if not put((positions, buf, skipped)):
                        return
                    buf, positions, skipped = np.zeros_like(buf), [], 0
            if (positions or skipped) and not put((positions, buf, skipped)):  # buf's rest is zeros
                return
            put(None)
        except BaseException as exc:  # handed to the scoring thread, which raises it
            put(exc)

    scored: list[int] = []
    chunk: list = []  # logit rows not yet turned into top-K
    idx_parts, p_parts = [], []

    def top_k() -> None:
        logits = np.concatenate(chunk).astype(np.float64)
        top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = exp / exp.sum(axis=1, keepdims=True)
        idx_parts.append(top)
        p_parts.append(np.take_along_axis(probs, top, axis=1))
        chunk.clear()

    t0 = time.perf_counter()
    with _private_cwd():
        helper = threading.Thread(target=decode, name="wrn-predict-decode", daemon=True)
        helper.start()
        try:
            rows = 0
            while (item := batches.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                positions, images, skipped = item
                for start in range(0, len(positions), b):
                    n = min(b, len(positions) - start)
                    logits = np.asarray(model.logits(images[start:start + b]))
                    if logits.shape != (b, model.num_classes):
                        raise PredictError(f"MODEL {model.path} returned logits of shape {logits.shape} "
                                           f"for a batch of {b}, not ({b}, {model.num_classes}); export "
                                           f"it again")
                    chunk.append(logits[:n].copy())  # the runtime may reuse its output buffer
                    rows += n
                    if rows >= CHUNK_ROWS:
                        top_k()
                        rows = 0
                scored.extend(positions)
                if on_progress:
                    on_progress(len(positions) + skipped)
            if chunk:
                top_k()
        finally:
            stop.set()
            helper.join()
    seconds = time.perf_counter() - t0
    labels = np.asarray([job.images.labels[i] for i in scored], dtype=np.int32)
    top_idx = np.concatenate(idx_parts) if idx_parts else np.zeros((0, k), dtype=np.int64)
    top_p = np.concatenate(p_parts) if p_parts else np.zeros((0, k), dtype=np.float64)
    return Predictions([files[i] for i in scored], labels, top_idx, top_p, unreadable,
                       job.classes.names, seconds)


# --------------------------------------------------------------------------- results


def to_json(job: Job, result: Predictions) -> dict[str, Any]:
    """Everything about a predict run as one JSON-able dict (what ``-o FILE.json`` holds)."""
    names = result.classes
    acc = result.accuracy()
    summary: dict[str, Any] = {"images": result.count, "unreadable": len(result.unreadable),
                               "seconds": round(result.seconds, 4),
                               "imgs_per_s": round(result.imgs_per_s, 2)}
    doc: dict[str, Any] = {
        "model": str(job.model.path), "format": job.model.format, "config": job.model.config,
        "class_index": job.classes.source, "classes": len(names), "image_size": job.model.image_size,
        "batch_size": job.batch_size, "top_k": job.top_k, "labelled_folders": list(job.images.labelled),
        "summary": summary,
    }
    if acc is not None:
        summary.update({k: acc[k] for k in ("correct", "total", "top1", "topk", "topk_correct",
                                            "topk_accuracy")})
        doc["per_class"] = [{"index": c, "class": names[c], "correct": ok, "total": n,
                             "accuracy": ok / n} for c, ok, n in acc["per_class"]]
    doc["predictions"] = [
        {"path": path, "label": names[label] if label >= 0 else None,
         "label_index": int(label) if label >= 0 else None,
         "top": [{"class": names[c], "index": int(c), "p": float(p)} for c, p in zip(idx, ps)]}
        for path, label, idx, ps in zip(result.files, result.labels.tolist(), result.top_idx.tolist(),
                                        result.top_p.tolist())]
    doc["unreadable"] = [{"path": p, "reason": why} for p, why in result.unreadable]
    return doc


def json_text(doc: Mapping[str, Any]) -> str:
    """``doc`` as JSON text with one list item per line: readable, and written by json's C
    encoder (``indent=`` falls back to the pure-Python one, about 10 times slower, which was
    a tenth of the whole predict time for 1,200 images at batch 1)."""
    dumps = json.JSONEncoder(ensure_ascii=False).encode  # one encoder: json.dumps makes one per call

    parts = []
    for key, value in doc.items():
        if isinstance(value, list) and value:
            body = ",\n  ".join(dumps(item) for item in value)
            parts.append(f" {dumps(key)}: [\n  {body}\n ]")
        else:
            parts.append(f" {dumps(key)}: {dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def to_csv(job: Job, result: Predictions) -> str:
    """One row per image: path, label (empty when unknown), top-K names and probabilities;
    unreadable files last, with the reason in the ``error`` column."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    k = job.top_k
    writer.writerow(["path", "label", *[f"{w}{i}" for i in range(1, k + 1) for w in ("top", "p")], "error"])
    names = result.classes
    for path, label, idx, ps in zip(result.files, result.labels.tolist(), result.top_idx.tolist(),
                                    result.top_p.tolist()):
        cells = [x for c, p in zip(idx, ps) for x in (names[c], f"{p:.6f}")]
        writer.writerow([path, names[label] if label >= 0 else "", *cells, ""])
    for path, why in result.unreadable:
        writer.writerow([path, "", *([""] * (2 * k)), why])
    return out.getvalue()


def run_record(job: Job, result: Predictions, now: datetime | None = None) -> dict[str, Any]:
    """The summary record a run keeps of a predict (``RUN/predict/<stamp>.json``; the report
    command reads these keys)."""
    now = now or datetime.now(UTC)
    acc = result.accuracy()
    return {"kind": "predict", "model": str(job.model.path.resolve()), "format": job.model.format,
            "model_bytes": job.model.path.stat().st_size, "batch_size": job.batch_size,
            "images": result.count, "unreadable": len(result.unreadable),
            "top1": acc["top1"] if acc else None, "correct": acc["correct"] if acc else None,
            "total": acc["total"] if acc else None, "imgs_per_s": round(result.imgs_per_s, 2),
            "seconds": round(result.seconds, 4), "time": now.isoformat(timespec="milliseconds")}


def write_run_record(run_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` atomically as ``run_dir/predict/<UTC stamp>.json`` (``-2``, ``-3``...
    added when a record of the same second exists); returns the file."""
    from wrn.fileio import write_json_atomic

    stamp = datetime.fromisoformat(record["time"]).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = run_dir / RECORD_DIR
    folder.mkdir(exist_ok=True)
    path, n = folder / f"{stamp}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{n}.json"
    return write_json_atomic(path, record)


# --------------------------------------------------------------------------- ModelZoo's acc.log


def accuracy_line(doc: Mapping[str, Any]) -> str:
    """ModelZoo's postprocess line for a ``-o RESULT.json`` of a labelled split:
    ``Total data: N, top1 accuracy: X, top5 accuracy: Y.`` (top-5 only when the result has
    five predictions per image, or all classes); ``PredictError`` without labels."""
    preds = [p for p in doc.get("predictions", []) if p.get("label_index") is not None]
    if not preds:
        raise PredictError("the result has no labelled image: predict a labelled split (a folder of "
                           "<class>/<image> sub-folders named as in the class index)")
    top1 = sum(p["top"][0]["index"] == p["label_index"] for p in preds) / len(preds)
    line = f"Total data: {len(preds)}, top1 accuracy: {top1}"
    if all(len(p["top"]) >= min(5, doc.get("classes", 5)) for p in preds):
        top5 = sum(p["label_index"] in [t["index"] for t in p["top"][:5]] for p in preds) / len(preds)
        line += f", top5 accuracy: {top5}"
    return line + "."


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m wrn.predict accuracy RESULT.json``: print ``accuracy_line`` (exit 2 on a
    missing or unlabelled result)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m wrn.predict", description="ModelZoo's "
                                     "postprocess step: the accuracy line of a `wrn-launch predict "
                                     "-o RESULT.json` of a labelled split.")
    parser.add_argument("what", choices=["accuracy"])
    parser.add_argument("result", help="the JSON written by wrn-launch predict -o")
    args = parser.parse_args(argv)
    try:
        doc = json.loads(Path(args.result).read_text(encoding="utf-8"))
        print(accuracy_line(doc))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: {args.result}: {exc}; pass the JSON written by wrn-launch predict -o FILE.json",
              file=sys.stderr)
        return 2
    except PredictError as exc:
        print(f"error: {args.result}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
