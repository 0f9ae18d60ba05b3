"""MobileNetV3-style networks: a standalone net built from frozen layer specs, and the
weight-shared choice blocks a supernet is made of.

A network is ``stem -> blocks -> head``:

- ``StemSpec``: one conv-BN-activation (stride per axis: ``(freq, time)``),
- ``BlockSpec``: one inverted-residual block (``child_models.ops.InvertedResidual``),
- ``HeadSpec``: 1x1 conv-BN-h-swish -> global average pool -> Linear -> h-swish ->
  Dropout -> Linear (torchvision's MobileNetV3 classifier). Global pooling lets the
  clip length (and the number of mel bands) vary at run time.

Tensors are ``[B, C, n_mels, frames]`` in, ``[B, num_classes]`` logits out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from child_models.init import kaiming_init_
from child_models.ops import (
    ACTIVATIONS,
    ConvBNAct,
    InvertedResidual,
    NormLayer,
    SqueezeExcite,
    make_activation,
    pair,
)


def _check_positive(owner: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner}.{name} must be a positive int, got {value!r}")


def _check_activation(owner: str, activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"{owner}.activation={activation!r} is not one of {sorted(ACTIVATIONS)}")


@dataclass(frozen=True)
class StemSpec:
    """The first conv: ``in_channels`` is the input's (1 for a log-mel image)."""

    in_channels: int
    out_channels: int
    kernel_size: int = 3
    stride: tuple[int, int] = (2, 2)
    activation: str = "hswish"

    def __post_init__(self) -> None:
        _check_positive("StemSpec", in_channels=self.in_channels, out_channels=self.out_channels)
        object.__setattr__(self, "stride", pair(self.stride))
        _check_activation("StemSpec", self.activation)

    def build(self, norm_layer: NormLayer = nn.BatchNorm2d) -> ConvBNAct:
        return ConvBNAct(
            self.in_channels,
            self.out_channels,
            kernel_size=self.kernel_size,
            stride=self.stride,
            norm_layer=norm_layer,
            activation=self.activation,
        )


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block, channel counts already rounded."""

    in_channels: int
    expanded_channels: int
    out_channels: int
    kernel_size: int
    stride: tuple[int, int]
    use_se: bool
    activation: str

    def __post_init__(self) -> None:
        _check_positive(
            "BlockSpec",
            in_channels=self.in_channels,
            expanded_channels=self.expanded_channels,
            out_channels=self.out_channels,
            kernel_size=self.kernel_size,
        )
        if self.kernel_size % 2 == 0:
            raise ValueError(f"BlockSpec.kernel_size must be odd, got {self.kernel_size}")
        object.__setattr__(self, "stride", pair(self.stride))
        if not isinstance(self.use_se, bool):
            raise ValueError(f"BlockSpec.use_se must be a bool, got {self.use_se!r}")
        _check_activation("BlockSpec", self.activation)

    @property
    def has_residual(self) -> bool:
        return self.stride == (1, 1) and self.in_channels == self.out_channels

    def build(self, norm_layer: NormLayer = nn.BatchNorm2d) -> InvertedResidual:
        return InvertedResidual(
            in_channels=self.in_channels,
            expanded_channels=self.expanded_channels,
            out_channels=self.out_channels,
            kernel_size=self.kernel_size,
            stride=self.stride,
            activation=self.activation,
            use_se=self.use_se,
            norm_layer=norm_layer,
        )


@dataclass(frozen=True)
class HeadSpec:
    """Last 1x1 conv (``conv_channels``), pooling and the two-layer classifier."""

    in_channels: int
    conv_channels: int
    hidden_channels: int
    num_classes: int
    dropout: float = 0.2

    def __post_init__(self) -> None:
        _check_positive(
            "HeadSpec",
            in_channels=self.in_channels,
            conv_channels=self.conv_channels,
            hidden_channels=self.hidden_channels,
            num_classes=self.num_classes,
        )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"HeadSpec.dropout must be in [0, 1), got {self.dropout}")

    def build(self, norm_layer: NormLayer = nn.BatchNorm2d) -> "ClassifierHead":
        return ClassifierHead(self, norm_layer=norm_layer)


class ClassifierHead(nn.Module):
    """``[B, C, H, W] -> [B, num_classes]``: conv 1x1-BN-h-swish, global average pool,
    Linear -> h-swish -> Dropout -> Linear."""

    def __init__(self, spec: HeadSpec, *, norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv = ConvBNAct(
            spec.in_channels, spec.conv_channels, norm_layer=norm_layer, activation="hswish"
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(spec.conv_channels, spec.hidden_channels),
            nn.Hardswish(),
            nn.Dropout(p=spec.dropout),
            nn.Linear(spec.hidden_channels, spec.num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.conv(x))  # [B, conv_channels, 1, 1]
        return self.classifier(torch.flatten(x, 1))


class MobileNetV3(nn.Module):
    """A standalone MobileNetV3-style network: ``stem``, ``blocks`` (in order), ``head``.

    ``[B, stem.in_channels, n_mels, frames] -> [B, head.num_classes]``; any input size
    works. Weights get Kaiming init (``child_models.init``).
    """

    def __init__(
        self,
        *,
        stem: StemSpec,
        blocks: Sequence[BlockSpec],
        head: HeadSpec,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        channels = stem.out_channels
        for i, block in enumerate(blocks):
            if block.in_channels != channels:
                raise ValueError(f"block {i} takes {block.in_channels} channels, gets {channels}")
            channels = block.out_channels
        if head.in_channels != channels:
            raise ValueError(f"head takes {head.in_channels} channels, gets {channels}")
        self.stem = stem.build(norm_layer)
        self.blocks = nn.Sequential(*(block.build(norm_layer) for block in blocks))
        self.head = head.build(norm_layer)
        kaiming_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


class _ExpansionCandidate(nn.Module):
    """The weights of one expansion width of a choice block: expand 1x1 (absent when the
    width equals the input's), one depthwise conv+BN per kernel, SE, project 1x1."""

    def __init__(
        self,
        *,
        in_channels: int,
        expanded_channels: int,
        out_channels: int,
        kernel_sizes: Sequence[int],
        stride: tuple[int, int],
        norm_layer: NormLayer,
    ) -> None:
        super().__init__()
        self.expand = (
            ConvBNAct(in_channels, expanded_channels, norm_layer=norm_layer)
            if expanded_channels != in_channels
            else None
        )
        self.depthwise = nn.ModuleDict(
            {
                f"k{k}": ConvBNAct(
                    expanded_channels,
                    expanded_channels,
                    kernel_size=k,
                    stride=stride,
                    groups=expanded_channels,
                    norm_layer=norm_layer,
                )
                for k in kernel_sizes
            }
        )
        self.se = SqueezeExcite(expanded_channels)
        self.project = ConvBNAct(expanded_channels, out_channels, norm_layer=norm_layer)


class InvertedResidualChoices(nn.Module):
    """Every candidate of one searchable layer; ``forward(x, spec)`` runs one of them.

    Sharing granularity: each expansion width has its own expand/project 1x1 convs,
    SE and BNs; within it each kernel size has its own depthwise conv and BN. The
    activation choice has no weights. So every (layer, choice) owns its weights, a
    candidate runs at exactly the cost of the standalone block (no weight slicing),
    and each BN sees only the features of the path it normalises.
    ``[B, in, H, W] -> [B, out, (H - 1) // s_f + 1, (W - 1) // s_t + 1]``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        stride: tuple[int, int] | int,
        expanded_options: Sequence[int],
        kernel_sizes: Sequence[int],
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = pair(stride)
        self.candidates = nn.ModuleDict(
            {
                f"x{e}": _ExpansionCandidate(
                    in_channels=in_channels,
                    expanded_channels=e,
                    out_channels=out_channels,
                    kernel_sizes=kernel_sizes,
                    stride=self.stride,
                    norm_layer=norm_layer,
                )
                for e in sorted(set(expanded_options))
            }
        )
        self.activations = nn.ModuleDict({name: make_activation(name) for name in ACTIVATIONS})
        self.use_residual = self.stride == (1, 1) and in_channels == out_channels

    def _candidate(self, spec: BlockSpec) -> tuple[_ExpansionCandidate, ConvBNAct]:
        if (spec.in_channels, spec.out_channels, spec.stride) != (
            self.in_channels,
            self.out_channels,
            self.stride,
        ):
            raise ValueError(
                f"block spec {spec} does not fit this layer "
                f"(in {self.in_channels}, out {self.out_channels}, stride {self.stride})"
            )
        try:
            candidate = self.candidates[f"x{spec.expanded_channels}"]
            return candidate, candidate.depthwise[f"k{spec.kernel_size}"]
        except KeyError:
            raise ValueError(
                f"this layer has no candidate with {spec.expanded_channels} expanded channels "
                f"and kernel {spec.kernel_size}; it holds {list(self.candidates)} "
                f"x {list(next(iter(self.candidates.values())).depthwise)}"
            ) from None

    def forward(self, x: Tensor, spec: BlockSpec) -> Tensor:  # type: ignore[override]
        # Mirrors InvertedResidual.forward op for op, so outputs match a standalone build.
        candidate, depthwise = self._candidate(spec)
        act = self.activations[spec.activation]
        out = x if candidate.expand is None else act(candidate.expand(x))
        out = act(depthwise(out))
        if spec.use_se:
            out = candidate.se(out)
        out = candidate.project(out)
        return out + x if self.use_residual else out

    def block_state_dict(self, spec: BlockSpec) -> dict[str, Tensor]:
        """The chosen candidate's tensors under ``spec.build()``'s names (not copies)."""
        candidate, depthwise = self._candidate(spec)
        parts: dict[str, nn.Module | None] = {
            "expand": candidate.expand,
            "depthwise": depthwise,
            "se": candidate.se if spec.use_se else None,
            "project": candidate.project,
        }
        return {
            f"{part}.{name}": tensor
            for part, module in parts.items()
            if module is not None
            for name, tensor in module.state_dict(keep_vars=False).items()
        }
