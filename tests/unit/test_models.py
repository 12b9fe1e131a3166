"""Tests for wrn.models: parameter counts, shapes, names, summaries, init and the stem pool.

CPU only, no network. The whole module takes well under a minute on two cores.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from wrn import models  # noqa: E402
from wrn.models import (  # noqa: E402
    MODEL_NAMES_HELP,
    ModelSpec,
    StemMaxPool,
    build_model,
    count_trainable,
    no_decay_param,
    parse_model_name,
    summary_lines,
)

ms.set_device("CPU")


@pytest.fixture(scope="module", autouse=True)
def pynative_mode():
    """Run this module's forwards eagerly (no graph compilation), restoring the mode after."""
    old = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=old)


@pytest.fixture(scope="module")
def wrn50_2():
    """One wrn50_2 @1000 in eval mode, shared because building it takes a few seconds."""
    ms.set_seed(0)
    net = build_model("wrn50_2", 1000)
    net.set_train(False)
    return net


def _zeros(n, size):
    return ms.Tensor(np.zeros((n, 3, size, size), np.float32))


# ------------------------------------------------------------------------------ param counts

def test_wrn50_2_param_count_matches_torchvision(wrn50_2):
    assert count_trainable(wrn50_2) == 68_883_240


@pytest.mark.parametrize(
    "name, num_classes, expected",
    [
        ("wrn50_2", 2388, 71_727_252),
        ("wrn28_10", 10, 36_479_194),
        ("wrn16_4", 10, 2_748_890),
        ("wrn101_2", 1000, 126_886_696),  # torchvision wide_resnet101_2
    ],
)
def test_param_counts(name, num_classes, expected):
    assert count_trainable(build_model(name, num_classes)) == expected


def test_bn_moving_statistics_are_not_counted():
    net = build_model("wrn10_2", 10)
    all_params = sum(int(np.prod(p.shape)) for p in net.get_parameters())
    assert all_params > count_trainable(net)


# ------------------------------------------------------------------------------ forward shapes

def test_cifar_forward_shape():
    net = build_model("wrn10_2", 10, image_size=32)
    net.set_train(False)
    out = net(_zeros(2, 32))
    assert out.shape == (2, 10)
    assert out.dtype == ms.float32


@pytest.mark.parametrize("size", [64, 96])
def test_bottleneck_forward_any_size(wrn50_2, size):
    x = ms.Tensor(np.random.default_rng(size).random((1, 3, size, size), np.float32))
    out = wrn50_2(x)
    assert out.shape == (1, 1000)
    assert np.isfinite(out.asnumpy()).all()


@pytest.mark.parametrize("name, dropout", [("wrn10_2", 0.3), ("wrn50_2", 0.2)])
def test_dropout_train_mode_forward(name, dropout):
    size = 32
    net = build_model(name, 5, image_size=size, dropout=dropout)
    net.set_train(True)
    out = net(ms.Tensor(np.random.default_rng(0).random((2, 3, size, size), np.float32)))
    assert out.shape == (2, 5)
    assert np.isfinite(out.asnumpy()).all()


def test_dropout_cells_present_only_when_asked():
    def n_dropout(net):
        return sum(isinstance(c, ms.nn.Dropout) for _, c in net.cells_and_names())

    assert n_dropout(build_model("wrn10_2", 10)) == 0
    assert n_dropout(build_model("wrn10_2", 10, dropout=0.3)) == 3  # one per block, n=1 x 3
    assert count_trainable(build_model("wrn10_2", 10, dropout=0.3)) == \
        count_trainable(build_model("wrn10_2", 10))


@pytest.mark.parametrize("name, size", [("wrn10_2", 32), ("wrn10_2", 37), ("wrn50_2", 67)])
def test_analytic_shapes_match_real_forward(name, size, wrn50_2):
    """The shapes summary_lines prints (computed analytically) equal a real forward's."""
    net = wrn50_2 if name == "wrn50_2" else build_model(name, 1000, image_size=32)
    net.set_train(False)
    x = _zeros(1, size)
    for part, cells, shape in net.top_level(size):
        for cell in cells:
            x = cell(x)
        assert tuple(x.shape) == shape, part
    assert tuple(x.shape) == (1, 1000)


# ------------------------------------------------------------------------------ names

@pytest.mark.parametrize(
    "name, family, depth, widen, layers",
    [
        ("wrn50_2", "bottleneck", 50, 2, (3, 4, 6, 3)),
        ("wrn101_2", "bottleneck", 101, 2, (3, 4, 23, 3)),
        ("wrn28_10", "cifar", 28, 10, (4, 4, 4)),
        ("wrn16_4", "cifar", 16, 4, (2, 2, 2)),
        ("wrn10_2", "cifar", 10, 2, (1, 1, 1)),
    ],
)
def test_parse_model_name(name, family, depth, widen, layers):
    spec = parse_model_name(name)
    assert spec == ModelSpec(name=name, family=family, depth=depth, widen=widen, layers=layers)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.depth = 1


@pytest.mark.parametrize(
    "bad, must_mention",
    [
        ("wrn-28-10", "did you mean 'wrn28_10'"),
        ("WRN50_2", "did you mean 'wrn50_2'"),
        ("wide_resnet50_2", "did you mean 'wrn50_2'"),
        ("wrn50_21", "did you mean"),
        ("wrn50_4", "did you mean 'wrn50_2'"),
        ("wrn30_10", "(d-4) % 6 == 0"),
        ("wrn30_10", "'wrn28_10'"),
        ("wrn4_1", "(d-4) % 6 == 0"),
        ("wrn28_0", "k must be >= 1"),
        ("resnet50", "wrn50_2"),
        ("", "wrn50_2"),
    ],
)
def test_bad_names(bad, must_mention):
    with pytest.raises(ValueError) as err:
        parse_model_name(bad)
    msg = str(err.value)
    assert must_mention in msg
    assert "\n" not in msg


def test_build_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="wrn28_10"):
        build_model("wrn28-10", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("wrn10_2", 0)
    with pytest.raises(ValueError, match="image_size"):
        build_model("wrn50_2", 10, image_size=16)
    with pytest.raises(ValueError, match="dropout"):
        build_model("wrn10_2", 10, dropout=1.0)


def test_names_help_lists_the_families():
    for word in ("wrn50_2", "wrn101_2", "wrn28_10", "(d-4) % 6 == 0"):
        assert word in MODEL_NAMES_HELP


# ------------------------------------------------------------------------------ summary

def test_summary_lines_wrn50_2():
    lines = summary_lines("wrn50_2", 1000, 224)
    assert lines[-1] == "trainable parameters: 68,883,240"
    body = {line.split()[0]: line for line in lines[2:-1]}
    assert list(body) == ["stem", "maxpool", "layer1", "layer2", "layer3", "layer4", "pool", "fc"]
    assert "(1, 64, 112, 112)" in body["stem"]
    assert "(1, 2048, 7, 7)" in body["layer4"]
    assert "(1, 1000)" in body["fc"]
    per_part = sum(int(line.split()[-1].replace(",", "")) for line in lines[2:-1])
    assert per_part == 68_883_240


def test_summary_lines_cifar_last_line():
    lines = summary_lines("wrn16_4", 10, 32)
    assert lines[-1] == "trainable parameters: 2,748,890"
    assert any(line.startswith("group3") and "(1, 256, 8, 8)" in line for line in lines)


# ------------------------------------------------------------------------------ weight decay

def test_no_decay_param_grouping(wrn50_2):
    params = wrn50_2.trainable_params()
    decay = [p for p in params if not no_decay_param(p)]
    no_decay = [p for p in params if no_decay_param(p)]
    # convs: 16 blocks x 3 + 4 downsample + stem = 53, + fc weight; BNs: 53 x (gamma, beta) + fc bias
    assert len(decay) == 54
    assert len(no_decay) == 107
    assert all(len(p.shape) == 4 for p in decay if not p.name.startswith("fc."))
    assert all(p.name.endswith(("gamma", "beta", "bias")) for p in no_decay)
    n_no_decay = sum(int(np.prod(p.shape)) for p in no_decay)
    assert 0 < n_no_decay < 0.01 * count_trainable(wrn50_2)


def test_no_decay_param_cifar():
    net = build_model("wrn10_2", 10)
    params = net.trainable_params()
    # convs: stem + 3 blocks x 2 + 3 shortcuts = 10, + fc weight; BNs: 3 x 2 + head = 7
    assert sum(not no_decay_param(p) for p in params) == 11
    assert sum(no_decay_param(p) for p in params) == 7 * 2 + 1


# ------------------------------------------------------------------------------ init

def test_init_is_deterministic_given_seed():
    def weights(seed):
        ms.set_seed(seed)
        return [p.asnumpy() for p in build_model("wrn10_2", 10).get_parameters()]

    a, b, c = weights(3), weights(3), weights(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_init_values(wrn50_2):
    # He normal, fan_out, relu: std = sqrt(2 / (out_channels * kh * kw))
    w = wrn50_2.layer3[0].conv2.weight.asnumpy()  # 512 x 512 x 3 x 3
    assert abs(w.std() / np.sqrt(2.0 / (512 * 9)) - 1) < 0.02
    assert abs(w.mean()) < 1e-3
    bn = wrn50_2.layer1[0].bn1
    assert (bn.gamma.asnumpy() == 1).all()
    assert (bn.beta.asnumpy() == 0).all()
    assert (wrn50_2.fc.bias.asnumpy() == 0).all()


def test_parameter_names_follow_torchvision(wrn50_2):
    names = {p.name for p in wrn50_2.trainable_params()}
    for name in ("conv1.weight", "bn1.gamma", "layer1.0.conv1.weight",
                 "layer1.0.downsample.0.weight", "layer4.2.bn3.beta", "fc.weight", "fc.bias"):
        assert name in names


# ------------------------------------------------------------------------------ stem max-pool

def _np_maxpool_3x3_s2_p1(x: np.ndarray) -> np.ndarray:
    """Reference: torch.nn.MaxPool2d(3, stride=2, padding=1) semantics (padding never wins)."""
    n, c, h, w = x.shape
    padded = np.full((n, c, h + 2, w + 2), -np.inf, dtype=x.dtype)
    padded[:, :, 1:-1, 1:-1] = x
    oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = padded[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(2, 3))
    return out


@pytest.mark.parametrize("h, w", [(8, 8), (7, 9), (1, 2)])
def test_stem_maxpool_matches_reference(h, w):
    rng = np.random.default_rng(h * 100 + w)
    # the pool follows a ReLU, so its inputs are >= 0; include exact zeros like a ReLU makes
    x = np.maximum(rng.standard_normal((2, 3, h, w)), 0).astype(np.float32)
    got = StemMaxPool()(ms.Tensor(x)).asnumpy()
    np.testing.assert_array_equal(got, _np_maxpool_3x3_s2_p1(x))


def test_stem_maxpool_in_network_follows_relu(wrn50_2):
    x = np.random.default_rng(1).standard_normal((1, 3, 33, 33)).astype(np.float32)
    stem = wrn50_2.relu(wrn50_2.bn1(wrn50_2.conv1(ms.Tensor(x))))
    assert stem.asnumpy().min() >= 0
    np.testing.assert_array_equal(wrn50_2.maxpool(stem).asnumpy(),
                                  _np_maxpool_3x3_s2_p1(stem.asnumpy()))


# ------------------------------------------------------------------------------ packaging

def test_package_import_stays_mindspore_free():
    code = "import sys, wrn; assert 'mindspore' not in sys.modules, 'wrn imported mindspore'"
    repo_root = Path(models.__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo_root)
