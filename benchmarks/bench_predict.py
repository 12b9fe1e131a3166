"""``wrn-launch predict`` throughput on CPU against a bare loop, for a MINDIR and an ONNX model.

Results ``predict_<format>_b<batch>_imgs_per_s``: images/s of ``wrn-launch predict MODEL FOLDER
-o OUT.json`` (run in this process through ``launcher.cli.main``: argument parsing, finding
the images, loading the model, the quick file check and evaluation's preprocessing per image,
batching, softmax and top-5, writing the JSON) against a bare loop over the same files with the
same runtime (``mindspore.load`` + ``nn.GraphCell``, or an onnxruntime session) and the same
decode (``wrn.pipeline.eval_image_ops`` as one ``Compose``): list the folder, read, decode,
fill the batch (the last one padded), run the model, take the argmax. Both sides include
loading the model and count only the images scored. Target: ours >= 0.95 x the bare loop.
The details add the images/s predict reports for its scoring phase alone (preprocessing and
model, the part the bare loop's work corresponds to).

The model is the default job's (WRN-10-2, 10 classes, 32 px) with fresh weights (the speed
does not depend on them), exported at batch 1 (``wrn-launch export``'s default) and at batch
32; the images are the built-in sample's train split (``builtin:rp2k-sample``: 1,200 small
JPEG/PNG files of 36-45 px and one corrupt file, which both sides skip). The two sides
alternate run by run, after one untimed run of each (compilation, page cache).

    python -m benchmarks.bench_predict [--runs N] [--quick]
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import compare, emit, log

BATCHES = (1, 32)
FORMATS = ("MINDIR", "ONNX")


def make_models(folder: Path, batches=BATCHES) -> dict[tuple[str, int], Path]:
    """A fresh default-config WRN checkpoint exported as MINDIR and ONNX at each batch size."""
    import mindspore as ms

    from wrn import checkpoint
    from wrn.config import load_config
    from wrn.export import export_checkpoint
    from wrn.models import build_model

    cfg = load_config(None)
    ms.set_seed(1)
    net = build_model(cfg.model, cfg.num_classes, cfg.image_size, cfg.dropout)
    ckpt = checkpoint.save(net, folder / "ckpt", "bench", {"epoch": 1, "step": 1, "model": cfg.model})
    models = {}
    for fmt in FORMATS:
        for b in batches:
            models[(fmt, b)] = export_checkpoint(ckpt, fmt, output=folder / f"wrn-b{b}", batch_size=b).path
    return models


def sample_images(quick: bool) -> tuple[Path, list[str]]:
    """The built-in sample's train split (``--quick``: its test split) and the class names."""
    from wrn import synth
    from wrn.classindex import build_class_index

    root = synth.ensure_builtin()
    return root / ("test" if quick else "train"), build_class_index(root)


def ours(model: Path, images: Path, classes: Path, out: Path) -> tuple[float, int, float]:
    """``wrn-launch predict`` in this process; (seconds, images scored, images/s of its scoring
    phase alone, as it reports it: without parsing, finding images, loading, writing)."""
    import json

    from launcher import cli

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        rc = cli.main(["predict", str(model), str(images), "--classes", str(classes), "-o", str(out)])
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"wrn-launch predict exited {rc}: {err.getvalue()[-2000:]}")
    summary = json.loads(out.read_text())["summary"]
    return seconds, summary["images"], summary["imgs_per_s"]


def bare(fmt: str, model: Path, images: Path, batch: int, image_size: int) -> tuple[float, int]:
    """The bare loop: load, list, read, decode, batch, run, argmax; (seconds, images scored)."""
    import mindspore as ms
    import mindspore.dataset.transforms as T
    import numpy as np

    from wrn.pipeline import eval_image_ops

    t0 = time.perf_counter()
    if fmt == "MINDIR":
        cell = ms.nn.GraphCell(ms.load(str(model)))

        def run(x):
            return cell(ms.Tensor(x)).asnumpy()
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run(x):
            return session.run(None, {name: x})[0]
    ops = T.Compose(eval_image_ops(image_size))
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(images) for f in names)
    buf = np.zeros((batch, 3, image_size, image_size), np.float32)
    n = scored = 0
    preds = []
    cwd = os.getcwd()
    os.chdir(tempfile.gettempdir())  # MindSpore dumps undecodable images into the current folder
    try:
        for path in files:
            try:
                buf[n] = ops(np.fromfile(path, dtype=np.uint8))
            except RuntimeError:
                continue
            n += 1
            if n == batch:
                preds.append(run(buf).argmax(1))
                scored, n = scored + n, 0
        if n:
            buf[n:] = 0
            preds.append(run(buf)[:n].argmax(1))
            scored += n
    finally:
        os.chdir(cwd)
    return time.perf_counter() - t0, scored


def main() -> None:
    parser = common.arg_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args()

    from wrn.dist import prepare_process_env

    prepare_process_env()  # before MindSpore is imported, as wrn-launch predict does
    import mindspore as ms

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    try:
        results, details = run(args, work)
        emit("predict", results, **details)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import json

    from wrn.config import load_config

    image_size = load_config(None).image_size
    images, class_names = sample_images(args.quick)
    classes = work / "classes.json"
    classes.write_text(json.dumps(class_names, ensure_ascii=False))
    models = make_models(work)
    files = sum(len(names) for _, _, names in os.walk(images))
    log(f"{files} files under {images}; models: {', '.join(p.name for p in models.values())}")
    results, counts, scoring_phase = [], {}, {}
    for (fmt, batch), model in models.items():
        out = work / f"out-{fmt}-{batch}.json"
        ours(model, images, classes, out)  # untimed: compilation, page cache, first-call costs
        bare(fmt, model, images, batch, image_size)
        mine, peer, phase = [], [], []
        for r in range(args.runs):
            for side in (("ours", "bare") if r % 2 == 0 else ("bare", "ours")):
                if side == "ours":
                    seconds, n, scoring = ours(model, images, classes, out)
                    mine.append(n / seconds)
                    phase.append(scoring)
                else:
                    seconds, n = bare(fmt, model, images, batch, image_size)
                    peer.append(n / seconds)
                counts.setdefault(f"{fmt}_b{batch}_{side}_images", n)
            log(f"{fmt} batch {batch} run {r + 1}/{args.runs}: predict {mine[-1]:.0f} img/s, "
                f"bare loop {peer[-1]:.0f} img/s")
        results.append(compare(f"predict_{fmt.lower()}_b{batch}_imgs_per_s", mine, peer, unit="img/s",
                               target=">= 0.95", peer_name="bare loop, same runtime and decode",
                               higher_is_better=True))
        scoring_phase[f"{fmt}_b{batch}"] = common.spread(phase)
        log(f"{fmt} batch {batch}: ratio {results[-1]['ratio']} (target >= 0.95, met={results[-1]['met']})")
    details = {"quick": args.quick, "images_folder": str(images), "files": files,
               "model": "wrn10_2, 10 classes, 32 px, fresh weights", "scored": counts,
               "ours_scoring_phase_imgs_per_s": scoring_phase,
               "threads": {"onnxruntime": "default (one per core)", "mindspore": "default"},
               "note": "both sides include loading the model; ours also writes the JSON output"}
    return results, details


if __name__ == "__main__":
    main()
