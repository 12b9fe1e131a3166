"""``wrn-launch predict MODEL IMAGES... [--top-k K] [-o FILE.csv|.json] [--batch-size B]``: the
top-K classes of images from a checkpoint, an exported MINDIR or an ONNX file (``wrn.predict``).

The terminal gets a table of the first ``SHOW`` images (all of them go to ``-o``), the accuracy
when the images form a labelled split, and the files skipped with the reason (on stderr). A
progress bar with images/s runs on stderr when it is a terminal. A model that belongs to a run
directory leaves a summary record in ``RUN/predict/`` for ``wrn-launch report``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from launcher.commands.common import error, number_type, positive_int, write_output

HELP = "top-K classes of images from a checkpoint, MINDIR or ONNX model"
DESCRIPTION = ("Predict the classes of images with a trained model: a checkpoint (its run's "
               "config.yaml and classes.json are found by themselves), an exported MINDIR or an "
               "ONNX file (class names from --classes, or from the run directory the file lies "
               "in). IMAGES are files or folders (searched recursively for .jpg, .jpeg, .png); a "
               "folder of <class>/<image> sub-folders named as in the class index is a labelled "
               "split, scored for accuracy. Images are preprocessed exactly as for evaluation; "
               "unreadable ones are listed and skipped.")
#: Rows of the terminal table (the rest go to -o); up to SHOW + SLACK are all shown.
SHOW = 20
SLACK = 5
#: Per-class accuracy rows on the terminal (the lowest first when there are more classes).
SHOW_CLASSES = 20
#: Unreadable files named on the terminal.
SHOW_SKIPPED = 10
OUTPUT_SUFFIXES = (".csv", ".json")
#: --backend: MindSpore 2.10 from PyPI runs on CPU and Ascend only (no GPU build to offer).
BACKENDS = {"auto": "auto", "ascend": "Ascend", "cpu": "CPU"}

top_k_type = number_type(int, 1, "a whole number", "must be 1 or more (the number of classes shown per image)")
device_id_type = number_type(int, 0, "a whole number", "must be 0 or more")


def output_file(text: str) -> str:
    """``-o``: a path ending in .csv or .json (any letter case)."""
    if not text.lower().endswith(OUTPUT_SUFFIXES):
        raise argparse.ArgumentTypeError(f"{text!r}: the file name must end in .csv or .json "
                                         f"(the format is taken from it)")
    return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``wrn-launch predict``."""
    p.add_argument("model", metavar="MODEL", help="checkpoint (.ckpt), MINDIR (.mindir) or ONNX (.onnx)")
    p.add_argument("images", metavar="IMAGES", nargs="+",
                   help="image files and folders (recursive; a folder of class sub-folders is a "
                   "labelled split)")
    p.add_argument("--top-k", "--top_k", dest="top_k", type=top_k_type, default=None, metavar="K",
                   help="classes shown per image (default 5, at most the class count)")
    p.add_argument("-o", "--output", dest="output", type=output_file, metavar="FILE.csv|FILE.json",
                   help="write every prediction there (CSV: one row per image; JSON: also the "
                   "accuracy per class and the unreadable files)")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=positive_int, default=None,
                   metavar="B", help="images per batch (default: an exported model's own batch "
                   "dimension; 32 for a checkpoint)")
    p.add_argument("--classes", metavar="FILE", help="class names: the run's classes.json (default: "
                   "found in the model's run directory), a text file with one name per line, or "
                   "ModelZoo's imagenet_label.json")
    p.add_argument("--config", metavar="FILE", help="the run's config.yaml (default: found in the "
                   "model's run directory); for MINDIR/ONNX it is checked against the model")
    p.add_argument("--backend", choices=tuple(BACKENDS), default="auto",
                   help="where MindSpore runs (default: Ascend when present, else CPU); ONNX "
                   "always runs on onnxruntime's CPU")
    p.add_argument("--device-id", "--device_id", dest="device_id", type=device_id_type, default=None,
                   metavar="N", help="device number on Ascend (default: $DEVICE_ID, else 0)")


def run(args: argparse.Namespace) -> int:
    """Predict; exit status 0, or 2 for bad input (one paragraph on stderr)."""
    import os

    from wrn.config import ConfigError
    from wrn.predict import DEFAULT_TOP_K, prepare, score

    if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        return error("predict", f"-o {args.output}: folder {os.path.dirname(os.path.abspath(args.output))} "
                     f"does not exist; create it or choose another path")
    device_id = args.device_id
    if device_id is None:
        env = os.environ.get("DEVICE_ID", "0").strip() or "0"
        if not env.isascii() or not env.isdigit():
            return error("predict", f"DEVICE_ID={env!r} is not a device number; unset it or pass "
                         f"--device-id N")
        device_id = int(env)
    try:
        job = prepare(args.model, args.images, classes=args.classes, config=args.config,
                      batch_size=args.batch_size, top_k=args.top_k or DEFAULT_TOP_K,
                      device_target=BACKENDS[args.backend], device_id=device_id)
        for note in job.notes:
            print(f"wrn-launch predict: note: {note}", file=sys.stderr)
        result = score(job, _progress(len(job.images.files)))
    except ConfigError as exc:  # PredictError is one
        return error("predict", str(exc))
    return _report(args, job, result)


class _Progress:
    """A Rich progress bar with images/s on stderr, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                            console=Console(file=sys.stderr), transient=True)
        self.task = self.bar.add_task("predict", total=total, rate="")
        self.started = False

    def __call__(self, n: int) -> None:
        if not self.started:
            self.bar.start()
            self.started = True
        self.bar.advance(self.task, n)
        speed = self.bar.tasks[0].speed
        if speed:
            self.bar.update(self.task, rate=f"{speed:,.0f} img/s")
        if self.bar.finished:
            self.bar.stop()


def _progress(total: int):
    return _Progress(total) if sys.stderr.isatty() else None


def _report(args: argparse.Namespace, job, result) -> int:
    """Print the table or write -o, the accuracy, the skipped files; leave the run record."""
    from launcher.commands.common import output_console
    from wrn.predict import json_text, run_record, to_csv, to_json, write_run_record

    console = output_console()
    acc = result.accuracy()
    if args.output:
        if args.output.lower().endswith(".json"):
            text = json_text(to_json(job, result))
        else:
            text = to_csv(job, result)
        if write_output("predict", args.output, text) is None:
            return 2
    else:
        console.print(_table(job, result, acc is not None))
        rest = result.count - _shown(result.count)
        if rest:
            console.print(f"... and {rest} more image(s): pass -o FILE.csv or -o FILE.json to keep "
                          f"all {result.count} predictions", markup=False, soft_wrap=True)
    model = job.model
    console.print(f"scored {result.count} image(s) with {model.path} ({model.format}, batch "
                  f"{job.batch_size}) in {result.seconds:.2f} s ({result.imgs_per_s:,.1f} img/s)"
                  + (f"; wrote {args.output}" if args.output else ""), markup=False, soft_wrap=True)
    if acc is not None:
        where = ", ".join(job.images.labelled) or "labels from " + job.classes.source
        topk = (f", top-{acc['topk']} {acc['topk_accuracy']:.4f} ({acc['topk_correct']}/{acc['total']})"
                if acc["topk"] > 1 else "")
        console.print(f"top-1 accuracy {acc['top1']:.4f} ({acc['correct']}/{acc['total']}){topk} on "
                      f"{where}", markup=False, soft_wrap=True)
        console.print(_class_table(result, acc))
    if result.unreadable:
        _list_skipped(result.unreadable, args.output)
    if job.run_dir is not None:
        try:
            path = write_run_record(job.run_dir, run_record(job, result))
            console.print(f"record: {path}", markup=False, soft_wrap=True)
        except OSError as exc:  # a read-only run directory does not spoil the predictions
            print(f"wrn-launch predict: warning: no record written in {job.run_dir}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
    return 0


def _shown(count: int) -> int:
    return count if count <= SHOW + SLACK else SHOW


def _table(job, result, labelled: bool) -> Any:
    from rich import box
    from rich.table import Table

    from launcher.ui.formatting import cells

    names = result.classes
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("image", overflow="fold")
    if labelled:
        table.add_column("label")
    table.add_column("top-1")
    table.add_column("p", justify="right")
    if job.top_k > 1:
        table.add_column(f"top-2..{job.top_k}")
    for i in range(_shown(result.count)):
        idx, ps, label = result.top_idx[i], result.top_p[i], int(result.labels[i])
        row = [result.files[i]]
        if labelled:
            row.append("" if label < 0 else names[label] + ("" if label == idx[0] else " (wrong)"))
        row += [names[idx[0]], f"{ps[0]:.4f}"]
        if job.top_k > 1:
            row.append(", ".join(f"{names[c]} {p:.3f}" for c, p in zip(idx[1:], ps[1:])))
        table.add_row(*cells(*row))
    return table


def _class_table(result, acc) -> Any:
    from rich import box
    from rich.table import Table

    from launcher.ui.formatting import cells

    rows = sorted(acc["per_class"], key=lambda r: (r[1] / r[2], r[0]))
    shown = rows if len(rows) <= SHOW_CLASSES else rows[:SHOW_CLASSES // 2]
    title = ("accuracy per class" if shown is rows else
             f"accuracy per class: the {len(shown)} lowest of {len(rows)} (all of them: -o FILE.json)")
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for name, justify in (("class", "left"), ("correct", "right"), ("images", "right"),
                          ("accuracy", "right")):
        table.add_column(name, justify=justify)
    for c, ok, n in (shown if shown is not rows else sorted(rows)):
        table.add_row(*cells(result.classes[c], str(ok), str(n), f"{ok / n:.4f}"))
    return table


def _list_skipped(skipped: list[tuple[str, str]], output: str | None) -> None:
    shown = "; ".join(f"{p} ({why})" for p, why in skipped[:SHOW_SKIPPED])
    more = len(skipped) - SHOW_SKIPPED
    rest = (f"; and {more} more" + (f" (all in {output})" if output else " (all of them: -o FILE.json)")
            if more > 0 else "")
    print(f"wrn-launch predict: skipped {len(skipped)} file(s) that are not readable images: "
          f"{shown}{rest}", file=sys.stderr)
