"""Wide ResNet models for MindSpore 2.x.

Two families share the ``wrn<d>_<k>`` naming scheme:

* **bottleneck** (ImageNet style): ``wrn50_2`` and ``wrn101_2``, the same networks as
  torchvision's ``wide_resnet50_2`` / ``wide_resnet101_2``: a ResNet-50/101 layout whose
  bottleneck 3x3 convolutions are twice as wide (width_per_group=128, expansion 4, stride on the
  3x3 conv, 7x7/2 stem + BN + ReLU + 3x3/2 max-pool, 1x1 conv + BN downsample, no conv biases).
* **cifar** (Zagoruyko & Komodakis, "Wide Residual Networks", 2016): ``wrn<d>_<k>`` with
  ``(d - 4) % 6 == 0``, three groups of ``n = (d - 4) / 6`` pre-activation basic blocks of widths
  ``16k, 32k, 64k``, e.g. ``wrn28_10``, ``wrn16_4``, ``wrn10_2``.

Both end in global average pooling written as a mean over H and W, so any input size works
and the network exports to ONNX (``AdaptiveAvgPool2D`` does not). The layout of each family
lives in a table (``BOTTLENECK_LAYERS``, ``CIFAR_WIDTHS``), one block class per block type and
one builder per family, in the style of torchvision's ``resnet.py``.

This module imports MindSpore at import time; only the training worker imports it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass

import mindspore as ms
from mindspore import nn, ops
from mindspore.common import initializer as init

__all__ = [
    "BOTTLENECK_LAYERS",
    "CIFAR_WIDTHS",
    "MODEL_NAMES_HELP",
    "ModelSpec",
    "parse_model_name",
    "build_model",
    "count_trainable",
    "summary_lines",
    "no_decay_param",
    "BottleneckBlock",
    "WideBasicBlock",
    "GlobalAvgPool2d",
    "StemMaxPool",
    "BottleneckWideResNet",
    "CifarWideResNet",
]

# ---------------------------------------------------------------------------------------------
# Layout tables
# ---------------------------------------------------------------------------------------------

#: Blocks per stage of the ImageNet-style bottleneck networks, keyed by depth (widen is 2).
BOTTLENECK_LAYERS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
}
#: Widening factor of the bottleneck networks (torchvision: width_per_group = 64 * 2).
BOTTLENECK_WIDEN = 2
#: Output channels = planes * expansion for a bottleneck block.
BOTTLENECK_EXPANSION = 4
#: ``planes`` of each bottleneck stage, and its stride.
BOTTLENECK_PLANES: tuple[int, ...] = (64, 128, 256, 512)
BOTTLENECK_STRIDES: tuple[int, ...] = (1, 2, 2, 2)

#: CIFAR WRN: stem width, then the base width of each group (multiplied by k), and strides.
CIFAR_STEM_WIDTH = 16
CIFAR_WIDTHS: tuple[int, int, int] = (16, 32, 64)
CIFAR_STRIDES: tuple[int, int, int] = (1, 2, 2)

#: Smallest input the bottleneck networks are meant for (their total stride is 32).
MIN_BOTTLENECK_IMAGE_SIZE = 32
#: Smallest input for the CIFAR networks (their total stride is 4).
MIN_CIFAR_IMAGE_SIZE = 8

#: Well-known names, used for "did you mean" suggestions.
_KNOWN_NAMES: tuple[str, ...] = (
    "wrn50_2", "wrn101_2",
    "wrn10_1", "wrn10_2", "wrn16_4", "wrn16_8", "wrn22_8", "wrn28_10", "wrn28_12", "wrn40_4",
    "wrn40_10",
)

MODEL_NAMES_HELP: str = (
    "model names: wrn50_2, wrn101_2 (ImageNet bottleneck Wide ResNets, = torchvision "
    "wide_resnet50_2/101_2); wrn<d>_<k> CIFAR-style WRN-d-k with (d-4) % 6 == 0 and k >= 1, "
    "e.g. wrn10_2, wrn16_4, wrn28_10, wrn40_4"
)

_NAME_RE = re.compile(r"^wrn(\d+)_(\d+)$")


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """A parsed, validated model name.

    Attributes:
        name: the canonical name, e.g. ``"wrn50_2"``.
        family: ``"bottleneck"`` (ImageNet style) or ``"cifar"`` (WRN-d-k).
        depth: the ``d`` of the name (number of weighted layers in the paper's counting).
        widen: the widening factor ``k``.
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)`` or ``(4, 4, 4)`` for ``wrn28_10``.
    """

    name: str
    family: str
    depth: int
    widen: int
    layers: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.family not in ("bottleneck", "cifar"):
            raise ValueError(f"model family must be 'bottleneck' or 'cifar', got {self.family!r}")
        if self.widen < 1 or not self.layers or min(self.layers) < 1:
            raise ValueError(f"invalid model spec {self!r}")

    @property
    def min_image_size(self) -> int:
        """Smallest square input size this network is meant for."""
        if self.family == "bottleneck":
            return MIN_BOTTLENECK_IMAGE_SIZE
        return MIN_CIFAR_IMAGE_SIZE


def _did_you_mean(candidate: str) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest well-known name, or ``""``."""
    close = difflib.get_close_matches(candidate, _KNOWN_NAMES, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _normalise(name: str) -> str:
    """Lower-case ``name`` and map common spellings (``WRN-28-10``, ``wide_resnet50_2``) onto
    ``wrn<d>_<k>``; used only to suggest the right spelling, never to accept a wrong one."""
    s = name.strip().lower()
    s = re.sub(r"^wide[_-]?resnet[_-]?", "wrn", s)
    s = re.sub(r"^wrn[_-]", "wrn", s)
    s = re.sub(r"^(wrn\d+)[-x](\d+)$", r"\1_\2", s)
    return s


def _nearest_cifar_depths(depth: int) -> list[int]:
    """Valid CIFAR depths ((d-4) % 6 == 0, d >= 10) nearest to ``depth``, closest first."""
    below = depth - ((depth - 4) % 6)
    cands = sorted({d for d in (below, below + 6) if d >= 10} or {10})
    return sorted(cands, key=lambda d: (abs(d - depth), d))


def parse_model_name(name: str) -> ModelSpec:
    """Parse and validate a model name such as ``"wrn50_2"`` or ``"wrn28_10"``.

    Args:
        name: ``wrn50_2``, ``wrn101_2`` or ``wrn<d>_<k>`` with ``(d - 4) % 6 == 0``, ``d >= 10``
            and ``k >= 1``.

    Returns:
        The :class:`ModelSpec` of the network.

    Raises:
        ValueError: with a one-line message saying what is valid (and, where it can tell, what
            was probably meant).
    """
    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {type(name).__name__}; "
                         f"{MODEL_NAMES_HELP}")
    m = _NAME_RE.match(name)
    if m is None:
        fixed = _normalise(name)
        if fixed != name and _NAME_RE.match(fixed):
            hint = f" (did you mean {fixed!r}?)"
        else:
            hint = _did_you_mean(name.strip().lower())
        raise ValueError(f"unknown model name {name!r}{hint}; {MODEL_NAMES_HELP}")

    depth, widen = int(m.group(1)), int(m.group(2))
    if depth in BOTTLENECK_LAYERS:
        if widen != BOTTLENECK_WIDEN:
            raise ValueError(
                f"unsupported model {name!r}: the ImageNet bottleneck Wide ResNets exist only "
                f"with widen factor {BOTTLENECK_WIDEN} (did you mean "
                f"'wrn{depth}_{BOTTLENECK_WIDEN}'?); {MODEL_NAMES_HELP}")
        return ModelSpec(name=name, family="bottleneck", depth=depth, widen=widen,
                         layers=BOTTLENECK_LAYERS[depth])

    if widen < 1:
        raise ValueError(f"invalid model {name!r}: widen factor k must be >= 1; "
                         f"{MODEL_NAMES_HELP}")
    if depth < 10 or (depth - 4) % 6 != 0:
        near = " or ".join(f"'wrn{d}_{widen}'" for d in _nearest_cifar_depths(depth))
        raise ValueError(
            f"invalid depth in {name!r}: CIFAR WRN-d-k needs (d-4) % 6 == 0 and d >= 10 "
            f"(n = (d-4)/6 blocks per group, e.g. d = 10, 16, 22, 28, 34, 40), nearest: {near}; "
            f"ImageNet bottleneck depths are "
            f"{', '.join(str(d) for d in BOTTLENECK_LAYERS)} (with k = {BOTTLENECK_WIDEN})")
    n = (depth - 4) // 6
    return ModelSpec(name=name, family="cifar", depth=depth, widen=widen,
                     layers=(n,) * len(CIFAR_WIDTHS))


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------

def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free convolution with torchvision's padding (k // 2 on every side) and He-normal
    (fan_out, relu) initialisation.

    Explicit symmetric padding ('pad' mode), not 'same': with stride 2 on an even input 'same'
    pads only bottom/right, which shifts the sampling grid relative to torchvision.
    """
    pad = kernel // 2
    return nn.Conv2d(
        in_ch, out_ch, kernel_size=kernel, stride=stride,
        pad_mode="pad" if pad else "valid", padding=pad, has_bias=False,
        weight_init=init.HeNormal(negative_slope=0, mode="fan_out", nonlinearity="relu"),
    )


def _bn(channels: int, gamma: str = "ones") -> nn.BatchNorm2d:
    """BatchNorm with torchvision's defaults (eps 1e-5, running-stat momentum 0.1, which is
    MindSpore's ``momentum=0.9``), gamma 1 (or as given) and beta 0."""
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9, gamma_init=gamma, beta_init="zeros")


def _dense(in_ch: int, out_ch: int) -> nn.Dense:
    """Classifier layer: weights N(0, 0.01), bias 0."""
    return nn.Dense(in_ch, out_ch, weight_init=init.Normal(sigma=0.01), bias_init="zeros",
                    has_bias=True)


class GlobalAvgPool2d(nn.Cell):
    """Mean over H and W: (N, C, H, W) -> (N, C).

    Works for any spatial size and exports to ONNX as ReduceMean, unlike ``AdaptiveAvgPool2D``
    (whose ONNX export fails) or a fixed-size ``AvgPool2d`` (which ties the net to one input size).
    """

    def __init__(self) -> None:
        super().__init__()
        self.mean = ops.ReduceMean(keep_dims=False)

    def construct(self, x):
        return self.mean(x, (2, 3))


class StemMaxPool(nn.Cell):
    """3x3, stride-2 max-pool with one pixel of padding on every side, as torchvision's
    ``MaxPool2d(kernel_size=3, stride=2, padding=1)``, built from an explicit pad and a
    'valid' pool because ``MaxPool2d(pad_mode='pad')`` does not export to ONNX.

    The padding value is 0, not -inf. This is exact for the place this cell is used: its input
    comes straight from a ReLU, so every value is >= 0, and every 3x3 window contains at least
    one real pixel (the padding is only 1 wide), so the window maximum is >= 0 and a zero in the
    padding can never exceed it. A zero constant pad is also the plainest Pad for exporters.
    For inputs that can be negative this cell would differ from torchvision; it is not meant
    for them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.Pad(paddings=((0, 0), (0, 0), (1, 1), (1, 1)), mode="CONSTANT")
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")

    def construct(self, x):
        return self.pool(self.pad(x))


class BottleneckBlock(nn.Cell):
    """torchvision-style bottleneck: 1x1 reduce, 3x3 (carries the stride), 1x1 expand, each
    followed by BN, ReLU after the first two and after the residual sum.

    Args:
        in_ch: input channels.
        planes: base width of the block; output channels are ``planes * expansion``.
        stride: stride of the 3x3 conv (and of the downsample).
        width: channels of the 3x3 conv (``planes * widen`` for the Wide ResNets).
        downsample: whether to project the shortcut with 1x1 conv + BN.
    """

    expansion = BOTTLENECK_EXPANSION

    def __init__(self, in_ch: int, planes: int, stride: int, width: int,
                 downsample: bool) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = _conv(in_ch, width, 1)
        self.bn1 = _bn(width)
        self.conv2 = _conv(width, width, 3, stride)
        self.bn2 = _bn(width)
        self.conv3 = _conv(width, out_ch, 1)
        self.bn3 = _bn(out_ch)
        self.relu = nn.ReLU()
        if downsample:
            self.downsample = nn.SequentialCell([_conv(in_ch, out_ch, 1, stride), _bn(out_ch)])
        else:
            self.downsample = nn.Identity()

    def construct(self, x):
        identity = self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class WideBasicBlock(nn.Cell):
    """Pre-activation wide basic block of WRN-d-k:
    BN-ReLU-conv3x3(stride)-[dropout]-BN-ReLU-conv3x3, plus a shortcut.

    The shortcut is the identity when the shape is unchanged, otherwise a bias-free 1x1 conv
    (with the stride) applied to the pre-activated input, as in the authors' code.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        stride: stride of the first 3x3 conv and of the shortcut.
        dropout: drop probability between the two convs (0 disables it).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = _bn(in_ch)
        self.conv1 = _conv(in_ch, out_ch, 3, stride)
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.bn2 = _bn(out_ch)
        self.conv2 = _conv(out_ch, out_ch, 3, 1)
        self.relu = nn.ReLU()
        self.equal_in_out = in_ch == out_ch and stride == 1
        self.shortcut = nn.Identity() if self.equal_in_out else _conv(in_ch, out_ch, 1, stride)

    def construct(self, x):
        pre = self.relu(self.bn1(x))
        if self.equal_in_out:
            identity = x
        else:
            identity = self.shortcut(pre)
        out = self.conv1(pre)
        out = self.dropout(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------

def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length of a convolution/pool along one axis (floor mode)."""
    return (size + 2 * pad - kernel) // stride + 1


class BottleneckWideResNet(nn.Cell):
    """ImageNet-style Wide ResNet (torchvision ``wide_resnet50_2`` / ``wide_resnet101_2``).

    Args:
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)``.
        num_classes: size of the output.
        widen: multiplier of the bottleneck 3x3 width (2 for the Wide ResNets).
        dropout: drop probability before the classifier (timm's ``drop_rate``; 0 = none,
            which is torchvision's network).
    """

    def __init__(self, layers: tuple[int, ...], num_classes: int, widen: int = BOTTLENECK_WIDEN,
                 dropout: float = 0.0) -> None:
        super().__init__()
        stem_width = BOTTLENECK_PLANES[0]
        # Attribute names follow torchvision (conv1, bn1, layer1.0.conv1, ..., fc), so parameter
        # names map one to one onto a torchvision state dict.
        self.conv1 = _conv(3, stem_width, 7, 2)
        self.bn1 = _bn(stem_width)
        self.relu = nn.ReLU()
        self.maxpool = StemMaxPool()
        in_ch = stem_width
        stages = []
        for planes, blocks, stride in zip(BOTTLENECK_PLANES, layers, BOTTLENECK_STRIDES):
            stage, in_ch = self._make_stage(in_ch, planes, blocks, stride, widen)
            stages.append(stage)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = GlobalAvgPool2d()
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.fc = _dense(in_ch, num_classes)
        self.num_features = in_ch

    @staticmethod
    def _make_stage(in_ch: int, planes: int, blocks: int, stride: int,
                    widen: int) -> tuple[nn.SequentialCell, int]:
        """One stage of bottleneck blocks; the first carries the stride and the projection."""
        out_ch = planes * BottleneckBlock.expansion
        width = planes * widen
        cells = [BottleneckBlock(in_ch, planes, stride, width,
                                 downsample=stride != 1 or in_ch != out_ch)]
        cells += [BottleneckBlock(out_ch, planes, 1, width, downsample=False)
                  for _ in range(blocks - 1)]
        return nn.SequentialCell(cells), out_ch

    def construct(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.pool(x)
        x = self.dropout(x)
        return self.fc(x)

    def top_level(self, image_size: int) -> list[tuple[str, list[nn.Cell], tuple[int, ...]]]:
        """The top-level parts in forward order: (name, their cells, batch-1 output shape for a
        square ``image_size`` input, computed analytically). ``stem`` is conv1 + bn1 + relu;
        ``dropout`` is folded into ``fc``."""
        s = _conv_out(image_size, 7, 2, 3)
        rows = [("stem", [self.conv1, self.bn1, self.relu], (1, BOTTLENECK_PLANES[0], s, s))]
        s = _conv_out(s, 3, 2, 1)
        rows.append(("maxpool", [self.maxpool], (1, BOTTLENECK_PLANES[0], s, s)))
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        for i, (stage, planes, stride) in enumerate(
                zip(stages, BOTTLENECK_PLANES, BOTTLENECK_STRIDES), start=1):
            s = _conv_out(s, 3, stride, 1)
            rows.append((f"layer{i}", [stage], (1, planes * BottleneckBlock.expansion, s, s)))
        rows.append(("pool", [self.pool], (1, self.num_features)))
        rows.append(("fc", [self.dropout, self.fc], (1, self.fc.out_channels)))
        return rows


class CifarWideResNet(nn.Cell):
    """CIFAR-style WRN-d-k (Zagoruyko & Komodakis 2016).

    Args:
        blocks_per_group: ``n = (d - 4) / 6``.
        widen: widening factor ``k``.
        num_classes: size of the output.
        dropout: drop probability inside every block, between its two convs.
    """

    def __init__(self, blocks_per_group: int, widen: int, num_classes: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = _conv(3, CIFAR_STEM_WIDTH, 3, 1)
        in_ch = CIFAR_STEM_WIDTH
        groups = []
        for base, stride in zip(CIFAR_WIDTHS, CIFAR_STRIDES):
            out_ch = base * widen
            cells = [WideBasicBlock(in_ch if i == 0 else out_ch, out_ch,
                                    stride if i == 0 else 1, dropout)
                     for i in range(blocks_per_group)]
            groups.append(nn.SequentialCell(cells))
            in_ch = out_ch
        self.group1, self.group2, self.group3 = groups
        self.head = nn.SequentialCell([_bn(in_ch), nn.ReLU()])
        self.pool = GlobalAvgPool2d()
        self.fc = _dense(in_ch, num_classes)
        self.num_features = in_ch
        self.widen = widen

    def construct(self, x):
        x = self.stem(x)
        x = self.group1(x)
        x = self.group2(x)
        x = self.group3(x)
        x = self.head(x)
        x = self.pool(x)
        return self.fc(x)

    def top_level(self, image_size: int) -> list[tuple[str, list[nn.Cell], tuple[int, ...]]]:
        """The top-level parts in forward order: (name, their cells, batch-1 output shape for a
        square ``image_size`` input, computed analytically)."""
        s = image_size
        rows = [("stem", [self.stem], (1, CIFAR_STEM_WIDTH, s, s))]
        groups = (self.group1, self.group2, self.group3)
        for i, (group, base, stride) in enumerate(zip(groups, CIFAR_WIDTHS, CIFAR_STRIDES), 1):
            s = _conv_out(s, 3, stride, 1)
            rows.append((f"group{i}", [group], (1, base * self.widen, s, s)))
        rows.append(("head", [self.head], (1, self.num_features, s, s)))
        rows.append(("pool", [self.pool], (1, self.num_features)))
        rows.append(("fc", [self.fc], (1, self.fc.out_channels)))
        return rows


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------

def _build_bottleneck(spec: ModelSpec, num_classes: int, dropout: float) -> nn.Cell:
    """Builder for ``wrn50_2`` / ``wrn101_2``."""
    return BottleneckWideResNet(spec.layers, num_classes, widen=spec.widen, dropout=dropout)


def _build_cifar(spec: ModelSpec, num_classes: int, dropout: float) -> nn.Cell:
    """Builder for CIFAR-style ``wrn<d>_<k>``."""
    return CifarWideResNet(spec.layers[0], spec.widen, num_classes, dropout=dropout)


_BUILDERS: dict[str, Callable[[ModelSpec, int, float], nn.Cell]] = {
    "bottleneck": _build_bottleneck,
    "cifar": _build_cifar,
}


def build_model(name: str, num_classes: int, image_size: int = 224,
                dropout: float = 0.0) -> nn.Cell:
    """Build a Wide ResNet by name.

    Args:
        name: see :data:`MODEL_NAMES_HELP` (``wrn50_2``, ``wrn101_2``, ``wrn<d>_<k>``).
        num_classes: number of output logits (>= 1).
        image_size: side of the square input the caller intends to use. The networks themselves
            accept any size (global average pooling); this is only checked against the family's
            minimum (32 for bottleneck, 8 for CIFAR) so a mistake fails here, not mid-training.
        dropout: drop probability in [0, 1). CIFAR nets: inside every block (as in the paper);
            bottleneck nets: before the classifier.

    Returns:
        An ``nn.Cell`` mapping float32 NCHW images ``(N, 3, H, W)`` to logits
        ``(N, num_classes)``. Parameters are drawn from MindSpore's global seed, so
        ``mindspore.set_seed(s)`` before the call makes the result deterministic.

    Raises:
        ValueError: bad name, ``num_classes``, ``image_size`` or ``dropout``.
    """
    spec = parse_model_name(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) \
            or image_size < spec.min_image_size:
        raise ValueError(f"image_size for {name} must be an integer >= {spec.min_image_size}, "
                         f"got {image_size!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return _BUILDERS[spec.family](spec, num_classes, float(dropout))


# ---------------------------------------------------------------------------------------------
# Parameters and summaries
# ---------------------------------------------------------------------------------------------

def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def count_trainable(net: nn.Cell) -> int:
    """Total number of elements in ``net``'s trainable parameters (BN moving statistics are not
    trainable and are not counted)."""
    return sum(_numel(p.shape) for p in net.trainable_params())


def no_decay_param(param: ms.Parameter) -> bool:
    """True for a parameter that should get no weight decay: every parameter with at most one
    dimension, i.e. BatchNorm gamma/beta and all biases. Conv and Dense weights get decay."""
    return len(param.shape) <= 1


def summary_lines(name: str, num_classes: int, image_size: int = 224) -> list[str]:
    """A per-stage summary of a model, for logs and the CLI.

    One line per top-level cell in forward order (name, batch-1 output shape for a square
    ``image_size`` input, trainable parameters), after a header line, and as the last line
    exactly ``trainable parameters: 68,883,240`` (the real count, with thousands separators).
    Shapes are computed analytically, so this is fast even for large models on a slow CPU; it
    does build the model (parameter initialisation takes about a second for wrn50_2).
    """
    net = build_model(name, num_classes, image_size=image_size)
    rows = net.top_level(image_size)
    out = [f"{name} (num_classes={num_classes}, input 1x3x{image_size}x{image_size})",
           f"{'layer':<10}{'output shape':<24}{'params':>14}"]
    for part, cells, shape in rows:
        shape_txt = "(" + ", ".join(str(d) for d in shape) + ")"
        params = sum(count_trainable(c) for c in cells)
        out.append(f"{part:<10}{shape_txt:<24}{params:>14,}")
    out.append(f"trainable parameters: {count_trainable(net):,}")
    return out
