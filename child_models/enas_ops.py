"""The building blocks of the ENAS macro child (Pham et al. 2018, ``general_child.py``).

Every branch op maps ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` (stride 1,
"same" padding) and starts, as in the original, with a 1x1 conv-BN-ReLU that brings
the input to ``out_channels``:

======================  ====================================================
``conv3x3``/``conv5x5``  1x1 conv-BN-ReLU, kxk conv, BN, ReLU
``sep3x3``/``sep5x5``    1x1 conv-BN-ReLU, kxk depthwise, 1x1 pointwise, BN, ReLU
``avgpool3x3``           1x1 conv-BN-ReLU, 3x3 average pool (padding not counted)
``maxpool3x3``           1x1 conv-BN-ReLU, 3x3 max pool
======================  ====================================================

The option order of ``BRANCH_OPS`` is the branch order of the original code
(0 conv3x3, 1 sep3x3, 2 conv5x5, 3 sep5x5, 4 avg pool, 5 max pool), so op indices
read off an ENAS log mean the same op here.

Convolutions carry no bias (a BN follows each). BatchNorm uses PyTorch's defaults
(momentum 0.1, eps 1e-5), which equal the original's TF decay 0.9 and epsilon 1e-5.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def conv_bn_relu_1x1(in_channels: int, out_channels: int) -> nn.Sequential:
    """The 1x1 conv-BN-ReLU every ENAS branch starts with."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvBranch(nn.Module):
    """1x1 conv-BN-ReLU, then a kxk (optionally depthwise-separable) conv, BN, ReLU.

    ``inner_channels`` (default ``out_channels``, as the original) is the width between
    the 1x1 conv and the kxk conv; NetAdapt pruning narrows it.
    ``[B, in_channels, H, W] -> [B, out_channels, H, W]``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        separable: bool,
        inner_channels: int | None = None,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep H x W, got {kernel_size}")
        inner = out_channels if inner_channels is None else inner_channels
        if isinstance(inner, bool) or not isinstance(inner, int) or inner < 1:
            raise ValueError(f"inner_channels must be a positive int, got {inner_channels!r}")
        pad = kernel_size // 2
        self.reduce = conv_bn_relu_1x1(in_channels, inner)
        if separable:
            conv: nn.Module = nn.Sequential(
                nn.Conv2d(inner, inner, kernel_size, padding=pad, groups=inner, bias=False),
                nn.Conv2d(inner, out_channels, kernel_size=1, bias=False),
            )
        else:
            conv = nn.Conv2d(inner, out_channels, kernel_size, padding=pad, bias=False)
        self.conv = conv
        self.bn = nn.BatchNorm2d(out_channels)

    def inner_channels(self) -> tuple[tuple[nn.Module, ...], tuple[nn.Module, ...]]:
        """``(writers, readers)`` of the inner width: the modules whose outputs are those
        channels (1x1 conv, its BN, a separable branch's depthwise conv) and the conv
        whose inputs they are (what NetAdapt pruning cuts together)."""
        writers: tuple[nn.Module, ...] = (self.reduce[0], self.reduce[1])
        if isinstance(self.conv, nn.Sequential):  # separable: depthwise, then pointwise
            return writers + (self.conv[0],), (self.conv[1],)
        return writers, (self.conv,)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(self.reduce(x))), inplace=True)


class PoolBranch(nn.Module):
    """1x1 conv-BN-ReLU, then a 3x3 stride-1 max or average pool.

    The average pool does not count the zero padding (TF's "SAME" pooling, as in the
    original). ``[B, in_channels, H, W] -> [B, out_channels, H, W]``.
    """

    def __init__(self, *, in_channels: int, out_channels: int, kind: str) -> None:
        super().__init__()
        self.reduce = conv_bn_relu_1x1(in_channels, out_channels)
        if kind == "max":
            self.pool: nn.Module = nn.MaxPool2d(3, stride=1, padding=1)
        elif kind == "avg":
            self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        else:
            raise ValueError(f"pool kind must be 'max' or 'avg', got {kind!r}")

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.reduce(x))


BranchFactory = Callable[[int, int], nn.Module]

BRANCH_OPS: dict[str, BranchFactory] = {
    "conv3x3": lambda cin, cout: ConvBranch(in_channels=cin, out_channels=cout, kernel_size=3, separable=False),
    "sep3x3": lambda cin, cout: ConvBranch(in_channels=cin, out_channels=cout, kernel_size=3, separable=True),
    "conv5x5": lambda cin, cout: ConvBranch(in_channels=cin, out_channels=cout, kernel_size=5, separable=False),
    "sep5x5": lambda cin, cout: ConvBranch(in_channels=cin, out_channels=cout, kernel_size=5, separable=True),
    "avgpool3x3": lambda cin, cout: PoolBranch(in_channels=cin, out_channels=cout, kind="avg"),
    "maxpool3x3": lambda cin, cout: PoolBranch(in_channels=cin, out_channels=cout, kind="max"),
}
# The conv branches' (kernel, separable): the ops whose inner width can differ from their output.
CONV_BRANCHES: dict[str, tuple[int, bool]] = {"conv3x3": (3, False), "sep3x3": (3, True), "conv5x5": (5, False), "sep5x5": (5, True)}


def make_branch(op: str, *, in_channels: int, out_channels: int, inner_channels: int | None = None) -> nn.Module:
    """One ENAS branch op by name (a key of ``BRANCH_OPS``).

    ``inner_channels`` narrows a conv branch between its 1x1 and kxk convs; a pool
    branch's inner width is its output width, so it takes only ``None`` or ``out_channels``.
    """
    if op not in BRANCH_OPS:
        raise ValueError(f"unknown ENAS branch op {op!r}; choose one of {list(BRANCH_OPS)}")
    if inner_channels is None or inner_channels == out_channels:
        return BRANCH_OPS[op](in_channels, out_channels)
    if op not in CONV_BRANCHES:
        raise ValueError(f"{op} has no inner width apart from its output ({out_channels}), got {inner_channels}")
    kernel, separable = CONV_BRANCHES[op]
    return ConvBranch(
        in_channels=in_channels, out_channels=out_channels, kernel_size=kernel, separable=separable,
        inner_channels=inner_channels,
    )


class FactorizedReduction(nn.Module):
    """Halve H and W without discarding pixels: two offset stride-2 paths, concat, BN.

    Path 1 takes the pixels at even (row, col) positions, path 2 those at odd positions
    (the input shifted by one pixel, zero-padded at the bottom/right); each goes through
    its own 1x1 conv to ``out_channels // 2``; the two are concatenated and batch-normed.
    ``[B, in_channels, H, W] -> [B, out_channels, ceil(H/2), ceil(W/2)]``.
    """

    def __init__(self, *, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels % 2 != 0:
            raise ValueError(f"factorized reduction needs an even out_channels, got {out_channels}")
        self.path1 = nn.Conv2d(in_channels, out_channels // 2, kernel_size=1, bias=False)
        self.path2 = nn.Conv2d(in_channels, out_channels // 2, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        even = x[:, :, ::2, ::2]
        odd = F.pad(x, (0, 1, 0, 1))[:, :, 1::2, 1::2]
        # even: rows/cols 0, 2, ...; odd: rows/cols 1, 3, ... (the last is zero padding
        # when H or W is odd). Both are [B, C, ceil(H/2), ceil(W/2)].
        return self.bn(torch.cat([self.path1(even), self.path2(odd)], dim=1))


class SkipSum(nn.Module):
    """Sum the layer output with its chosen skip inputs, then BN (ENAS search mode).

    ``forward(*inputs)`` takes one or more tensors ``[B, channels, H, W]`` of equal shape
    and returns ``BN(sum(inputs))``; with one input it is just the BN.
    """

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, *inputs: Tensor) -> Tensor:
        if not inputs:
            raise ValueError("SkipSum needs at least one input")
        total = inputs[0]
        for extra in inputs[1:]:
            total = total + extra
        return self.bn(total)
