"""``wrn.train.EpochSink``, the Ascend loop's data sink, on this CPU host: MindSpore's
``data_sink`` refuses CPU, so it is replaced by a stand-in that pulls the batches from the
dataset in order, as the device queue would. What is checked is ours: ``sink(n)`` trains the
next ``n`` batches of the epoch's real pipeline (a resumed epoch's replayed skip included) and
returns the last loss, and ``close()`` releases the queue."""

from __future__ import annotations

import numpy as np
import pytest

from wrn import synth
from wrn.classindex import build_class_index
from wrn.pipeline import train_dataset
from wrn.splits import scan_split


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("sink")
    synth.generate(root, num_classes=3, train_per_class=8, test_per_class=1, seed=3)
    return scan_split(root, "train", build_class_index(root))


class Transfer:
    released = False

    def release(self):
        self.released = True


@pytest.fixture
def fake_data_sink(monkeypatch):
    import mindspore as ms

    made = []

    def data_sink(fn, dataset, sink_size=1, jit_config=None, input_signature=None):
        if hasattr(dataset, "__transfer_dataset__"):
            raise ValueError("The dataset has been used with network.")  # as MindSpore says
        dataset.__transfer_dataset__ = Transfer()
        batches = dataset.create_tuple_iterator(num_epochs=1)
        made.append(sink_size)

        def run():
            out = None
            for _ in range(sink_size):
                out = fn(*next(batches))
            return out
        return run

    monkeypatch.setattr(ms, "data_sink", data_sink)
    return made


def _dataset(split, skip=0):
    ds, steps = train_dataset(split, rank=0, world=1, batch_size=4, image_size=16, seed=2,
                              num_workers=1, start_epoch=1, skip_steps=skip,
                              replay_skipped=True)
    return ds, steps


def test_epoch_sink_trains_the_epochs_batches_in_order(split, fake_data_sink):
    import mindspore.dataset as msds

    from wrn.train import EpochSink

    whole = [(x.asnumpy(), y.asnumpy()) for x, y in
             _dataset(split)[0].create_tuple_iterator(num_epochs=1)]
    assert len(whole) == 6
    seen = []

    def step(images, labels):
        seen.append((images.asnumpy(), labels.asnumpy()))
        return float(labels.asnumpy().sum())

    fast = msds.config.get_fast_recovery()
    try:
        dataset, _ = _dataset(split, skip=2)  # a resumed epoch: batches 3-6, crops replayed
        sink = EpochSink(step, dataset)
        assert fake_data_sink == [1]  # one sink per dataset; sink(n) calls it n times
        assert sink(3) == float(whole[4][1].sum())
        assert sink(1) == float(whole[5][1].sum())
    finally:
        msds.config.set_fast_recovery(fast)
    assert len(seen) == 4
    for (x, y), (xw, yw) in zip(seen, whole[2:]):
        assert np.array_equal(y, yw) and np.array_equal(x, xw)  # the uninterrupted crops
    sink.close()
    assert dataset.__transfer_dataset__.released
