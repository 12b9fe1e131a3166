"""Per-class scoring (wrn.scores) and the evaluation's progress events, without MindSpore."""

import csv
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wrn.contract import PREFIX
from wrn.eval import BatchReporter
from wrn.scores import CSV_COLUMNS, Tally, write_per_class_csv

CLASSES = ("甲", "乙", "丙", "丁", "戊", "己", "庚")
NUM_CLASSES = len(CLASSES)


def _batch(rng, n, classes=NUM_CLASSES, pad=0):
    logits = rng.normal(size=(n + pad, classes)).astype(np.float32)
    labels = np.concatenate([rng.integers(0, classes, n), np.full(pad, -1)]).astype(np.int32)
    return logits, labels


def test_counts_match_a_plain_loop():
    rng = np.random.default_rng(0)
    tally = Tally(len(CLASSES))
    rows = []
    for n, pad in ((8, 0), (8, 0), (5, 3)):
        logits, labels = _batch(rng, n, pad=pad)
        tally.add(logits, labels, np.ones(len(labels), np.float32))
        rows += [(lg, lb) for lg, lb in zip(logits, labels) if lb >= 0]
    scores = tally.scores(CLASSES)
    assert scores.total == 21
    assert scores.correct == sum(int(lg.argmax() == lb) for lg, lb in rows)
    assert scores.topk_hits.sum() == sum(int(lb in np.argsort(-lg)[:5]) for lg, lb in rows)
    assert scores.loss_sum == 21.0  # padding rows are not counted
    for t in range(len(CLASSES)):
        assert scores.images_per_class()[t] == sum(1 for _, lb in rows if lb == t)


def test_summed_vectors_equal_one_tally_of_everything():
    """What the AllReduce does: the sum of the ranks' vectors scores like one rank saw all."""
    rng = np.random.default_rng(1)
    batches = [_batch(rng, 6) for _ in range(6)]
    whole, ranks = Tally(len(CLASSES)), [Tally(len(CLASSES)) for _ in range(3)]
    for i, (logits, labels) in enumerate(batches):
        whole.add(logits, labels)
        ranks[i % 3].add(logits, labels)
    summed = sum(r.vector() for r in ranks)
    a, b = whole.scores(CLASSES), ranks[0].scores(CLASSES, summed)
    assert np.array_equal(a.confusion, b.confusion) and np.array_equal(a.topk_hits, b.topk_hits)
    assert a.summary() == b.summary()


def test_fewer_classes_than_k_counts_every_image_in_top_k():
    tally = Tally(3)
    tally.add(np.eye(3, dtype=np.float32), np.array([2, 0, 1], np.int32))
    assert tally.k == 3 and tally.scores(("a", "b", "c")).topk == 1.0


def test_confused_pairs_largest_first_with_shares():
    tally = Tally(3)
    # class 0: 4 images, 3 taken for class 2; class 1: 2 images, 1 taken for class 0
    logits = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1], [1, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    tally.add(logits, np.array([0, 0, 0, 0, 1, 1], np.int32))
    scores = tally.scores(("a", "b", "c"))
    assert scores.confused_pairs() == [
        {"true": "a", "predicted": "c", "count": 3, "share": 0.75},
        {"true": "b", "predicted": "a", "count": 1, "share": 0.5}]
    summary = scores.summary()
    assert (summary["classes_scored"], summary["classes_perfect"], summary["classes_all_wrong"]) == (2, 0, 0)
    assert summary["correct"] == 2 and summary["total"] == 6


def test_per_class_csv_round_trips_names_and_sums_to_the_total(tmp_path):
    rng = np.random.default_rng(2)
    tally = Tally(len(CLASSES))
    for _ in range(4):
        tally.add(*_batch(rng, 9))
    scores = tally.scores(CLASSES)
    path = write_per_class_csv(scores, tmp_path / "per_class.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["class"] for r in rows] == list(CLASSES)
    assert sum(int(r["images"]) for r in rows) == scores.total == 36
    assert sum(int(r["correct"]) for r in rows) == scores.correct


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.lists(st.tuples(st.integers(0, 30), st.integers(0, 4)), min_size=1, max_size=5),
       st.integers(0, 2**32 - 1))
def test_any_batches_keep_the_counts_consistent(classes, shapes, seed):
    rng = np.random.default_rng(seed)
    names = tuple(f"c{i}" for i in range(classes))
    tally = Tally(classes)
    real = 0
    for n, pad in shapes:
        tally.add(*_batch(rng, n, classes, pad))
        real += n
    scores = tally.scores(names)
    rows = scores.per_class_rows()
    assert scores.total == real == sum(r["images"] for r in rows)
    assert scores.correct <= scores.topk_hits.sum() <= real
    assert all(p["count"] > 0 and p["true"] != p["predicted"] for p in scores.confused_pairs())


def test_tally_refuses_no_classes():
    with pytest.raises(ValueError):
        Tally(0)


def test_batch_reporter_reports_first_every_interval_and_last(capsys):
    now = [100.0]
    report = BatchReporter(rank=0, batches=7, interval=3, clock=lambda: now[0])
    for n in range(1, 8):
        now[0] += 0.5
        report(n, 4)
    events = [json.loads(line[len(PREFIX):]) for line in capsys.readouterr().out.splitlines()]
    assert [e["step"] for e in events] == [1, 3, 6, 7]
    assert all(e["event"] == "step" and e["steps_per_epoch"] == 7 and e["epoch"] == 1 for e in events)
    assert [e["imgs_per_s"] for e in events] == [8.0, 8.0, 8.0, 8.0]  # 4 images every 0.5 s
