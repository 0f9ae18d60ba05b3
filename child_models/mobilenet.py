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
from torch.nn import functional as F

from child_models.init import kaiming_init_
from child_models.ops import (
    ACTIVATIONS,
    ConvBNAct,
    InvertedResidual,
    NormLayer,
    SqueezeExcite,
    fast_layout,
    make_divisible,
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

    @property
    def hidden(self) -> nn.Linear:
        """The classifier's first Linear (``conv_channels -> hidden_channels``)."""
        return self.classifier[0]

    @property
    def output(self) -> nn.Linear:
        """The classifier's last Linear (``hidden_channels -> num_classes``)."""
        return self.classifier[3]

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


_ACTIVATION_FNS = {"relu": F.relu, "hswish": F.hardswish}  # what nn.ReLU / nn.Hardswish call


class InvertedResidualChoices(nn.Module):
    """Every candidate of one searchable layer; ``forward(x, spec)`` runs one of them.

    Weight sharing by slicing (the "superkernel" of Single-Path NAS, as in OFA and
    TuNAS): one expand 1x1, depthwise, SE and project conv, sized for the widest
    expansion and the largest kernel, hold the weights of every candidate. Expansion
    ``E`` uses the first ``E`` expanded channels (and SE squeeze channels), kernel
    ``k`` the centre ``k x k`` of the depthwise kernel. Every training step thus
    updates the channels and kernel centres that most archs use. (Measured on a toy
    4-class log-mel task, 1 arch per step: with a separate conv per (expansion,
    kernel) the supernet's loss stayed at chance for 300 steps; sliced, it fell to
    ~0.01 within 50.)

    Batchnorm is not shared: each expansion has its own expand and project BN, each
    (expansion, kernel) its own depthwise BN, because their statistics differ by path.
    The activation choice has no weights.
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
        self.use_residual = self.stride == (1, 1) and in_channels == out_channels
        self.widths = tuple(sorted(set(expanded_options)))
        self.kernel_sizes = tuple(sorted(set(kernel_sizes)))
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes must be odd to share one centre, got {self.kernel_sizes}")
        wide, big = self.widths[-1], self.kernel_sizes[-1]
        expanding = [e for e in self.widths if e != in_channels]
        self.expand = nn.Conv2d(in_channels, wide, 1, bias=False) if expanding else None
        self.depthwise = nn.Conv2d(wide, wide, big, groups=wide, bias=False)
        self.se = SqueezeExcite(wide)
        self.project = nn.Conv2d(wide, out_channels, 1, bias=False)
        self.expand_norms = nn.ModuleDict({f"x{e}": norm_layer(e) for e in expanding})
        self.depthwise_norms = nn.ModuleDict(
            {f"x{e}_k{k}": norm_layer(e) for e in self.widths for k in self.kernel_sizes}
        )
        self.project_norms = nn.ModuleDict({f"x{e}": norm_layer(out_channels) for e in self.widths})

    def _check(self, spec: BlockSpec) -> None:
        fixed = (spec.in_channels, spec.out_channels, spec.stride)
        if fixed != (self.in_channels, self.out_channels, self.stride):
            raise ValueError(
                f"block spec {spec} does not fit this layer "
                f"(in {self.in_channels}, out {self.out_channels}, stride {self.stride})"
            )
        if spec.expanded_channels not in self.widths or spec.kernel_size not in self.kernel_sizes:
            raise ValueError(
                f"this layer holds expanded widths {list(self.widths)} and kernels "
                f"{list(self.kernel_sizes)}, not {spec.expanded_channels} / {spec.kernel_size}"
            )

    def _depthwise_weight(self, width: int, kernel: int) -> Tensor:
        """``[width, 1, kernel, kernel]``: the centre of the shared depthwise kernel."""
        start = (self.depthwise.kernel_size[0] - kernel) // 2
        return self.depthwise.weight[:width, :, start : start + kernel, start : start + kernel]

    def _se_weights(self, width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """fc1 weight/bias and fc2 weight/bias of a ``width``-channel SqueezeExcite."""
        squeeze = make_divisible(width // 4, 8)
        fc1, fc2 = self.se.fc1, self.se.fc2
        return fc1.weight[:squeeze, :width], fc1.bias[:squeeze], fc2.weight[:width, :squeeze], fc2.bias[:width]

    def forward(self, x: Tensor, spec: BlockSpec) -> Tensor:  # type: ignore[override]
        # Mirrors InvertedResidual.forward op for op, so outputs match a standalone build.
        self._check(spec)
        width, kernel = spec.expanded_channels, spec.kernel_size
        act = _ACTIVATION_FNS[spec.activation]
        x = fast_layout(x)
        out = x
        if width != self.in_channels:
            out = act(self.expand_norms[f"x{width}"](F.conv2d(x, self.expand.weight[:width])))
        out = F.conv2d(
            out,
            self._depthwise_weight(width, kernel),
            stride=self.stride,
            padding=(kernel - 1) // 2,
            groups=width,
        )
        out = act(self.depthwise_norms[f"x{width}_k{kernel}"](out))
        if spec.use_se:
            w1, b1, w2, b2 = self._se_weights(width)
            scale = F.adaptive_avg_pool2d(out, 1)  # [B, width, 1, 1]
            out = out * F.hardsigmoid(F.conv2d(F.relu(F.conv2d(scale, w1, b1)), w2, b2))
        out = self.project_norms[f"x{width}"](F.conv2d(out, self.project.weight[:, :width]))
        return out + x if self.use_residual else out

    def block_state_dict(self, spec: BlockSpec) -> dict[str, Tensor]:
        """The chosen candidate's weights under ``spec.build()``'s names (fresh copies)."""
        self._check(spec)
        width, kernel = spec.expanded_channels, spec.kernel_size
        state: dict[str, Tensor] = {}
        if width != self.in_channels:
            state["expand.conv.weight"] = self.expand.weight[:width]
            state.update(_prefixed("expand.norm.", self.expand_norms[f"x{width}"]))
        state["depthwise.conv.weight"] = self._depthwise_weight(width, kernel)
        state.update(_prefixed("depthwise.norm.", self.depthwise_norms[f"x{width}_k{kernel}"]))
        if spec.use_se:
            names = ("se.fc1.weight", "se.fc1.bias", "se.fc2.weight", "se.fc2.bias")
            state.update(zip(names, self._se_weights(width)))
        state["project.conv.weight"] = self.project.weight[:, :width]
        state.update(_prefixed("project.norm.", self.project_norms[f"x{width}"]))
        return {name: tensor.detach().clone() for name, tensor in state.items()}


def _prefixed(prefix: str, module: nn.Module) -> dict[str, Tensor]:
    return {prefix + name: tensor for name, tensor in module.state_dict().items()}
