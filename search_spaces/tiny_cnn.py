"""tiny_cnn: the smallest complete search space, the worked example of the README's
"Adding a search space" (copy this file and its conf/search_space/tiny_cnn.yaml to start
your own).

A stride-2 conv stem, ``depth`` searchable layers of ``channels`` channels, global
pooling and a linear classifier. Per layer one decision, the kernel of a conv-BN-ReLU:
0 (the layer is skipped), 3 or 5, listed smallest network first (``options_by_size``,
which the sandwich rule of ``experiment=quick`` needs). Every layer keeps the stem's
channels and size, so any of them can be skipped. The supernet holds one 5x5 weight per
layer, of which a 3x3 layer uses the centre, and a private batchnorm per kernel.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from child_models.init import kaiming_init_
from child_models.supernet import Supernet
from search_spaces.base import Arch, ArchValue, InputShape, LayerCost, check_build_args
from search_spaces.layered import LayeredSpace

KERNELS = (0, 3, 5)  # 0: no layer; smallest network first


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def classifier(channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


class TinyCnn(nn.Module):
    """One arch as a standalone network: stem, the layers it keeps, classifier."""

    def __init__(self, in_channels: int, channels: int, kernels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, channels, 3, stride=2)
        self.blocks = nn.Sequential(*(conv_bn_relu(channels, channels, k) for k in kernels if k))
        self.head = classifier(channels, num_classes)
        kaiming_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


class TinyCnnSupernet(Supernet):
    """Every layer's shared 5x5 weight and its batchnorms; ``forward(x, arch)`` runs the
    kernels ``decode(arch)`` gives, ``subnet_state_dict`` names them as ``TinyCnn`` does."""

    def __init__(self, in_channels: int, channels: int, depth: int, num_classes: int,
                 decode: Callable[[Arch], list[int]]) -> None:
        super().__init__()
        self._decode = decode
        self.stem = conv_bn_relu(in_channels, channels, 3, stride=2)
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 5, bias=False) for _ in range(depth))
        self.norms = nn.ModuleList(
            nn.ModuleDict({f"k{k}": nn.BatchNorm2d(channels) for k in KERNELS if k}) for _ in range(depth)
        )
        self.head = classifier(channels, num_classes)
        kaiming_init_(self)

    def _weight(self, layer: int, kernel: int) -> Tensor:
        start = (5 - kernel) // 2
        return self.convs[layer].weight[:, :, start : start + kernel, start : start + kernel]

    def forward(self, x: Tensor, arch: Arch) -> Tensor:  # type: ignore[override]
        x = self.stem(x)
        for layer, kernel in enumerate(self._decode(arch)):
            if kernel:
                x = F.relu(self.norms[layer][f"k{kernel}"](F.conv2d(x, self._weight(layer, kernel), padding=kernel // 2)))
        return self.head(x)

    def subnet_state_dict(self, arch: Arch) -> dict[str, Tensor]:
        state = {f"stem.{k}": v.clone() for k, v in self.stem.state_dict().items()}
        kept = [(layer, kernel) for layer, kernel in enumerate(self._decode(arch)) if kernel]
        for j, (layer, kernel) in enumerate(kept):
            state[f"blocks.{j}.0.weight"] = self._weight(layer, kernel).detach().clone()
            norm = self.norms[layer][f"k{kernel}"].state_dict()
            state.update({f"blocks.{j}.1.{k}": v.clone() for k, v in norm.items()})
        state.update({f"head.{k}": v.clone() for k, v in self.head.state_dict().items()})
        return state


class TinyCnnSpace(LayeredSpace):
    name = "tiny_cnn"
    options_by_size = True

    def __init__(self, *, depth: int = 4, channels: int = 16) -> None:
        if depth < 1 or channels < 1:
            raise ValueError(f"tiny_cnn: depth and channels must be >= 1, got {depth} and {channels}")
        self.depth, self.channels = depth, channels

    def layer_choices(self) -> list[Mapping[str, tuple[int, ...]]]:
        return [{"kernel": KERNELS}] * self.depth

    def format_layer(self, layer: int, values: Mapping[str, ArchValue]) -> str:
        return f"k{values['kernel']}" if values["kernel"] else "skip"  # e.g. "k3|skip|k5|k3"

    def parse_layer(self, layer: int, token: str) -> dict[str, ArchValue]:
        if token == "skip":
            return {"kernel": 0}
        if token not in {f"k{k}" for k in KERNELS if k}:
            raise ValueError(f"layer {layer}: {token!r} is not one of k3, k5, skip")
        return {"kernel": int(token[1:])}

    def kernels(self, arch: Arch) -> list[int]:
        return [int(values["kernel"]) for values in self.layer_values(arch)]

    @property
    def presets(self) -> dict[str, Arch]:
        return {"all_k3": self.arch_from_layers([{"kernel": 3}] * self.depth)}  # e.g. reward.target_ms=all_k3

    def supernet(self, *, num_classes: int, input_shape: InputShape) -> TinyCnnSupernet:
        channels, _, _ = check_build_args(num_classes, input_shape)
        return TinyCnnSupernet(channels, self.channels, self.depth, num_classes, self.kernels)

    def build(self, arch: Arch, *, num_classes: int, input_shape: InputShape) -> TinyCnn:
        channels, _, _ = check_build_args(num_classes, input_shape)
        return TinyCnn(channels, self.channels, self.kernels(arch), num_classes)

    def layers(self, arch: Arch, *, num_classes: int, input_shape: InputShape) -> list[LayerCost]:
        """Stem, each kept layer and the classifier: together exactly ``build(arch)``."""
        c_in, height, width = check_build_args(num_classes, input_shape)
        c, h, w = self.channels, (height - 1) // 2 + 1, (width - 1) // 2 + 1
        units = [LayerCost(f"stem_c{c_in}_w{c}_{height}x{width}", (c_in, height, width),
                           lambda: conv_bn_relu(c_in, c, 3, stride=2))]
        units += [LayerCost(f"conv{k}_w{c}_{h}x{w}", (c, h, w), lambda k=k: conv_bn_relu(c, c, k))
                  for k in self.kernels(arch) if k]
        units.append(LayerCost(f"head_w{c}_n{num_classes}", (c, h, w), lambda: classifier(c, num_classes)))
        return units
