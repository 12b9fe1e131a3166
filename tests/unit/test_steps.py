"""Train-step building blocks: mixed precision with a fixed loss scale updates like fp32,
weight-decay grouping, and the exact-eval counter ignores padding rows."""

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from wrn.config import TrainConfig
from wrn.steps import EvalCounter, make_loss, make_optimizer, make_train_step, param_checksum


class Tiny(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, pad_mode="same", has_bias=True)
        self.fc = nn.Dense(8, 4)

    def construct(self, x):
        return self.fc(ops.mean(ops.relu(self.conv(x)), (2, 3)))


pytestmark = pytest.mark.usefixtures("mindspore_cpu_pynative")


def _train(amp_level, loss_scale, steps=3):
    ms.set_seed(3)
    net = Tiny()
    cfg = TrainConfig(weight_decay=1e-4)
    opt = make_optimizer(net, cfg, 0.1, loss_scale=loss_scale if amp_level != "O0" else 1.0)
    step = make_train_step(net, make_loss(0.0), opt, amp_level, loss_scale)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        step(ms.Tensor(rng.standard_normal((8, 3, 8, 8)).astype(np.float32)),
             ms.Tensor(rng.integers(0, 4, 8).astype(np.int32)))
    return {p.name: p.asnumpy().astype(np.float32) for p in net.trainable_params()}


def test_o2_with_fixed_loss_scale_matches_fp32_updates():
    fp32, fp16 = _train("O0", 1.0), _train("O2", 1024.0)
    start = _train("O0", 1.0, steps=0)
    for name in fp32:
        moved = np.abs(fp32[name] - start[name]).max()
        assert np.abs(fp32[name] - fp16[name]).max() < 0.05 * max(moved, 1e-3), name


def test_weight_decay_only_on_weights():
    net = Tiny()
    opt = make_optimizer(net, TrainConfig(weight_decay=0.5), 0.1)
    decayed = {p.name for p, d in zip(opt.parameters, opt.decay_flags) if d}
    assert decayed == {"conv.weight", "fc.weight"}


def test_eval_counter_ignores_padding_rows():
    net = Tiny()
    counter = EvalCounter(net)
    x = ms.Tensor(np.random.default_rng(1).standard_normal((6, 3, 8, 8)).astype(np.float32))
    pred = net(x).asnumpy().argmax(1)
    labels = pred.copy().astype(np.int32)
    labels[1] = (labels[1] + 1) % 4      # one wrong
    labels[4:] = -1                       # two padding rows
    correct, counted, _ = counter(x, ms.Tensor(labels)).asnumpy()
    assert (correct, counted) == (3, 4)
    # wrapping the net must not rename its parameters (checkpoints depend on the names)
    assert {p.name for p in net.trainable_params()} == {"conv.weight", "conv.bias", "fc.weight", "fc.bias"}


def test_checksum_changes_with_any_bit():
    net = Tiny()
    before = param_checksum(net)
    p = net.trainable_params()[0]
    data = p.asnumpy().copy()
    data.flat[0] = np.nextafter(data.flat[0], np.float32(1))
    p.set_data(ms.Tensor(data))
    assert param_checksum(net) != before
