"""Shared building blocks: channel rounding, conv-norm-activation, squeeze-and-excite,
and the MobileNetV3 inverted-residual block.

Every module maps ``[B, C_in, H, W] -> [B, C_out, H', W']`` with ``H`` the mel axis and
``W`` the time axis of a log-mel "image"; none assumes square inputs or 3 channels.
Activations are torch's own ``nn.ReLU`` / ``nn.Hardswish`` / ``nn.Hardsigmoid``
(h-swish(x) = x * ReLU6(x + 3) / 6, h-sigmoid(x) = ReLU6(x + 3) / 6, as in MobileNetV3
and torchvision), chosen by name so that specs and arch files stay plain strings.
"""

from __future__ import annotations

from typing import Callable, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

Stride = Union[int, tuple[int, int]]
NormLayer = Callable[[int], nn.Module]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "hswish": nn.Hardswish}


def make_divisible(value: float, divisor: int = 8, *, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (torchvision's semantics).

    Never below ``min_value`` (default ``divisor``) and never more than 10% below
    ``value``: e.g. ``make_divisible(44, 8) == 48``, ``make_divisible(20, 16) == 32``.
    """
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    if value <= 0:
        raise ValueError(f"cannot round a channel count of {value} (must be > 0)")
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name: ``"relu"`` or ``"hswish"``."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None


def fast_layout(x: Tensor) -> Tensor:
    """``x`` in channels-last (NHWC) memory on a CPU; unchanged elsewhere (same values).

    oneDNN's depthwise conv, half of a MobileNetV3 training step, ran 2-5x faster
    forward + backward on NHWC than on NCHW (torch 2.13, 1 thread, batch 64; see
    ``benchmarks/profile_step.py``), and convs, batchnorm and activations keep the
    layout, so one conversion per block is a no-op after the first. A 1-channel
    input is both layouts at once and makes the stem's output NCHW, hence the
    conversion at each block rather than once at the input. CUDA keeps NCHW: the
    change was not measured there.
    """
    if x.device.type != "cpu" or x.dim() != 4:
        return x
    return x.contiguous(memory_format=torch.channels_last)


def pair(stride: Stride) -> tuple[int, int]:
    """``2 -> (2, 2)``; ``(2, 1)`` stays; anything else raises ``ValueError``."""
    values = (stride, stride) if isinstance(stride, int) else tuple(stride)
    if len(values) != 2 or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in values):
        raise ValueError(f"a stride is a positive int or a (freq, time) pair of them, got {stride!r}")
    return values  # type: ignore[return-value]


class ConvBNAct(nn.Module):
    """Conv k x k (no bias, "same" padding for odd k) -> norm -> activation.

    ``activation=None`` leaves the output linear (the project conv of a block, and the
    supernet, which applies the chosen activation itself). ``[B, in, H, W] ->
    [B, out, (H - 1) // s_f + 1, (W - 1) // s_t + 1]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 1,
        stride: Stride = 1,
        groups: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=pair(stride),
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias=False,
        )
        self.norm = norm_layer(out_channels)
        self.act = make_activation(activation) if activation is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite as in torchvision's MobileNetV3.

    Global average pool -> 1x1 conv to ``squeeze_channels`` (default
    ``make_divisible(channels // 4, 8)``) -> ReLU -> 1x1 conv back -> h-sigmoid, which
    scales the input channel-wise. ``[B, C, H, W] -> [B, C, H, W]``.
    """

    def __init__(self, channels: int, *, squeeze_channels: int | None = None) -> None:
        super().__init__()
        squeeze = make_divisible(channels // 4, 8) if squeeze_channels is None else squeeze_channels
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)  # [B, C, 1, 1]
        scale = F.hardsigmoid(self.fc2(F.relu(self.fc1(scale))))
        return x * scale


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: expand 1x1 -> depthwise k x k -> [SE] -> project 1x1 (linear).

    The expand conv is absent when ``expanded_channels == in_channels`` (torchvision
    does the same); the identity shortcut is added when the stride is 1 and
    ``in_channels == out_channels``. Norm, activation and SE are injected.
    ``[B, in, H, W] -> [B, out, (H - 1) // s_f + 1, (W - 1) // s_t + 1]``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        expanded_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: Stride = 1,
        activation: str = "relu",
        use_se: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
        se_layer: Callable[[int], nn.Module] = SqueezeExcite,
    ) -> None:
        super().__init__()
        self.expand = (
            ConvBNAct(in_channels, expanded_channels, norm_layer=norm_layer, activation=activation)
            if expanded_channels != in_channels
            else None
        )
        self.depthwise = ConvBNAct(
            expanded_channels,
            expanded_channels,
            kernel_size=kernel_size,
            stride=stride,
            groups=expanded_channels,
            norm_layer=norm_layer,
            activation=activation,
        )
        self.se = se_layer(expanded_channels) if use_se else None
        self.project = ConvBNAct(expanded_channels, out_channels, norm_layer=norm_layer)
        self.use_residual = pair(stride) == (1, 1) and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        x = fast_layout(x)
        out = x if self.expand is None else self.expand(x)
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return out + x if self.use_residual else out
