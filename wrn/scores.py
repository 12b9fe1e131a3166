"""What an evaluation found, per class: a confusion matrix and what is read from it.

``Tally`` counts one rank's predictions (labels, top-1 classes, top-k hits, losses) into
arrays that are summed over ranks as they are; ``ClassScores`` turns the summed counts into
per-class accuracy, the most confused class pairs and the rows of ``per_class.csv``.

The counts are whole numbers kept in float64 here; summed over ranks in float32 they stay exact
up to 2**24 images per cell, far above any test split this project meets (RP2K: 39,457).

Import cost: numpy only (the launcher's views read the CSV and JSON it writes, not this).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wrn.fileio import write_atomic

#: Top-k of the second accuracy an evaluation reports (ModelZoo reports top-1 and top-5).
TOP_K = 5
#: Columns of ``per_class.csv``, in order.
CSV_COLUMNS = ("index", "class", "images", "correct", "top1", f"top{TOP_K}_correct",
               "most_confused_with", "confused_count")


class Tally:
    """One rank's counts over ``num_classes`` classes: ``add`` batches, then ``vector()`` is
    what is summed over ranks and ``from_vector`` reads a sum back."""

    def __init__(self, num_classes: int, k: int = TOP_K):
        if num_classes < 1:
            raise ValueError("Tally: num_classes must be >= 1")
        self.num_classes, self.k = num_classes, min(k, num_classes)
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.float64)  # [true, predicted]
        self.topk_hits = np.zeros(num_classes, dtype=np.float64)                 # per true class
        self.loss_sum = 0.0

    def add(self, logits: np.ndarray, labels: np.ndarray, losses: np.ndarray | None = None) -> None:
        """Count one batch. Rows labelled -1 are padding and are left out."""
        logits = np.asarray(logits)
        labels = np.asarray(labels).reshape(-1)
        keep = labels >= 0
        if not keep.any():
            return
        logits, labels = logits[keep], labels[keep].astype(np.int64)
        predicted = logits.argmax(axis=1)  # the first of equal maxima, as ops.Argmax picks
        np.add.at(self.confusion, (labels, predicted), 1.0)
        if self.k >= self.num_classes:
            hits = np.ones(len(labels), dtype=bool)
        else:
            top = np.argpartition(-logits, self.k - 1, axis=1)[:, :self.k]
            hits = (top == labels[:, None]).any(axis=1)
        np.add.at(self.topk_hits, labels[hits], 1.0)
        if losses is not None:
            self.loss_sum += float(np.asarray(losses).reshape(-1)[keep].astype(np.float64).sum())

    def vector(self) -> np.ndarray:
        """Every count in one float32 vector (confusion, top-k hits, loss sum): one AllReduce."""
        return np.concatenate([self.confusion.ravel(), self.topk_hits, [self.loss_sum]]).astype(np.float32)

    def scores(self, classes: Sequence[str], summed: np.ndarray | None = None) -> ClassScores:
        """The scores of these counts, or of ``summed`` (a ``vector()`` summed over ranks)."""
        if summed is None:
            return ClassScores(tuple(classes), self.confusion.copy(), self.topk_hits.copy(), self.loss_sum, self.k)
        n = self.num_classes
        summed = np.asarray(summed, dtype=np.float64)
        counts = np.rint(summed[:n * n + n])  # whole numbers, exact in float32 below 2**24
        return ClassScores(tuple(classes), counts[:n * n].reshape(n, n), counts[n * n:], float(summed[-1]), self.k)


@dataclass(frozen=True, eq=False)
class ClassScores:
    """Summed counts of a whole split: ``confusion[true, predicted]`` images, top-k hits per
    true class, the loss sum, and the class names in index order."""

    classes: tuple[str, ...]
    confusion: np.ndarray
    topk_hits: np.ndarray
    loss_sum: float
    k: int = TOP_K

    @property
    def total(self) -> int:
        return int(self.confusion.sum())

    @property
    def correct(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def top1(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def topk(self) -> float:
        return float(self.topk_hits.sum()) / self.total if self.total else 0.0

    def images_per_class(self) -> np.ndarray:
        return self.confusion.sum(axis=1)

    def confused_pairs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The ``limit`` largest off-diagonal cells, largest first (ties: by true then predicted
        index): ``{"true", "predicted", "count", "share"}`` where share is the fraction of the
        true class's images that went to that prediction."""
        off = self.confusion.copy()
        np.fill_diagonal(off, 0.0)
        rows, cols = np.nonzero(off)
        order = sorted(zip(rows.tolist(), cols.tolist()), key=lambda rc: (-off[rc], rc))[:limit]
        per_class = self.images_per_class()
        return [{"true": self.classes[t], "predicted": self.classes[p], "count": int(off[t, p]),
                 "share": round(float(off[t, p] / per_class[t]), 6)} for t, p in order]

    def per_class_rows(self) -> list[dict[str, Any]]:
        """One row per class in index order, with ``CSV_COLUMNS`` as keys (``top1`` empty for a
        class with no test images)."""
        rows = []
        per_class = self.images_per_class()
        for i, name in enumerate(self.classes):
            images, correct = int(per_class[i]), int(self.confusion[i, i])
            wrong = self.confusion[i].copy()
            wrong[i] = 0.0
            j = int(wrong.argmax())
            rows.append({"index": i, "class": name, "images": images, "correct": correct,
                         "top1": round(correct / images, 6) if images else "",
                         f"top{TOP_K}_correct": int(self.topk_hits[i]),
                         "most_confused_with": self.classes[j] if wrong[j] else "",
                         "confused_count": int(wrong[j])})
        return rows

    def summary(self, confused: int = 20) -> dict[str, Any]:
        """The JSON-able numbers: top-1, top-k, counts, mean loss, the confused pairs, and how
        many classes had test images and how many of them were all right or all wrong."""
        per_class = self.images_per_class()
        seen = per_class > 0
        diag = np.diag(self.confusion)
        return {"top1": self.top1, f"top{TOP_K}": self.topk, "correct": self.correct,
                f"top{TOP_K}_correct": int(self.topk_hits.sum()), "total": self.total,
                "loss": self.loss_sum / self.total if self.total else 0.0,
                "classes_scored": int(seen.sum()),
                "classes_perfect": int((seen & (diag == per_class)).sum()),
                "classes_all_wrong": int((seen & (diag == 0)).sum()),
                "confused": self.confused_pairs(confused)}


def write_per_class_csv(scores: ClassScores, path: str | os.PathLike) -> Path:
    """``per_class.csv``: one row per class (``CSV_COLUMNS``), UTF-8, written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(scores.per_class_rows())
    path = Path(path)
    write_atomic(path, buf.getvalue().encode("utf-8"))
    return path
