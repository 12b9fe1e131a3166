"""An evaluation's results on the console: the totals, the weakest classes and the most
confused class pairs, read from the eval.json and per_class.csv a worker wrote."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.ui.formatting import fmt_top1

if TYPE_CHECKING:
    from rich.console import Console

#: How many of the weakest classes and of the confused pairs are shown (all are in the files).
SHOWN = 10


def read_per_class(path: Path) -> list[dict[str, str]]:
    """The rows of a per_class.csv; [] when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def weakest(rows: list[dict[str, str]], limit: int = SHOWN) -> list[dict[str, str]]:
    """Classes with test images and below 100 % top-1, lowest first (ties: more images first)."""
    def accuracy(row: dict[str, str]) -> float:
        try:
            return float(row["top1"])
        except (KeyError, ValueError):
            return 1.0
    scored = [r for r in rows if r.get("top1") not in (None, "") and accuracy(r) < 1.0]
    return sorted(scored, key=lambda r: (accuracy(r), -int(r.get("images") or 0)))[:limit]


def show_eval(result: dict[str, Any], run_dir: Path, console: Console, why: str | None = None) -> None:
    """Print an evaluation's totals and its weakest classes and confused pairs as Rich tables."""
    from rich import box
    from rich.table import Table

    totals = Table(box=box.SIMPLE, show_header=False, title="evaluation", title_justify="left")
    totals.add_column(style="bold")
    totals.add_column()
    checkpoint = str(result.get("checkpoint", "-"))
    totals.add_row("checkpoint", checkpoint + (f"  ({why})" if why else ""))
    totals.add_row("data", str(result.get("data", "-")))
    totals.add_row("top-1", f"{fmt_top1(result.get('top1'))} ({result.get('correct')}/{result.get('total')})")
    if "top5" in result:
        totals.add_row("top-5", f"{fmt_top1(result.get('top5'))} ({result.get('top5_correct')}/{result.get('total')})")
    totals.add_row("classes", f"{result.get('classes_scored', '-')} with test images of {result.get('classes', '-')}; "
                   f"{result.get('classes_perfect', '-')} all right, {result.get('classes_all_wrong', '-')} all wrong")
    totals.add_row("images skipped", str(result.get("skipped", 0)))
    totals.add_row("devices", str(result.get("world_size", "-")))
    totals.add_row("files", f"{run_dir / 'eval.json'}, {run_dir / str(result.get('per_class_csv', 'per_class.csv'))}")
    console.print(totals)

    rows = weakest(read_per_class(run_dir / str(result.get("per_class_csv", "per_class.csv"))))
    if rows:
        table = Table(box=box.SIMPLE_HEAD, title=f"weakest classes (of {result.get('classes_scored', '?')})",
                      title_justify="left")
        for name, justify in (("class", "left"), ("top-1", "right"), ("right/images", "right"),
                              ("most often taken for", "left"), ("times", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for r in rows:
            table.add_row(r.get("class", ""), fmt_top1(float(r["top1"])), f"{r.get('correct')}/{r.get('images')}",
                          r.get("most_confused_with", ""), r.get("confused_count", ""))
        console.print(table)

    pairs = result.get("confused") or []
    if pairs:
        table = Table(box=box.SIMPLE_HEAD, title="most confused pairs", title_justify="left")
        for name, justify in (("true class", "left"), ("predicted as", "left"), ("images", "right"),
                              ("share of the class", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for pair in pairs[:SHOWN]:
            table.add_row(str(pair.get("true")), str(pair.get("predicted")), str(pair.get("count")),
                          fmt_top1(pair.get("share")))
        console.print(table)
