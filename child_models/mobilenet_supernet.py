"""The MobileNetV3 supernet: a shared stem and head around one ``InvertedResidualChoices``
per searchable layer. It knows no search space: ``decode`` (given by the space) turns
an arch into one ``BlockSpec`` per layer (``None`` for a skipped layer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from torch import Tensor, nn

from child_models.init import kaiming_init_
from child_models.mobilenet import BlockSpec, HeadSpec, InvertedResidualChoices, StemSpec
from child_models.ops import NormLayer
from child_models.supernet import Supernet

Decode = Callable[[Any], Sequence["BlockSpec | None"]]


@dataclass(frozen=True)
class LayerSlot:
    """What one searchable layer fixes: channels, stride and the expanded widths offered."""

    in_channels: int
    out_channels: int
    stride: tuple[int, int]
    expanded_options: tuple[int, ...]


class MobileNetV3Supernet(Supernet):
    """Every candidate of every layer; ``forward(x, arch)`` runs ``decode(arch)``'s path.

    ``[B, C, n_mels, frames] -> [B, num_classes]``. Stem and head are shared by all
    archs; each layer is an ``InvertedResidualChoices`` (see there for the sharing).
    Parameters are created stem, layers, head, then Kaiming-initialised, in that order.
    """

    def __init__(
        self,
        *,
        stem: StemSpec,
        layers: Sequence[LayerSlot],
        kernel_sizes: Sequence[int],
        head: HeadSpec,
        norm_layer: NormLayer,
        decode: Decode,
    ) -> None:
        super().__init__()
        self._decode = decode
        self.stem = stem.build(norm_layer)
        self.layers = nn.ModuleList(
            InvertedResidualChoices(
                in_channels=slot.in_channels,
                out_channels=slot.out_channels,
                stride=slot.stride,
                expanded_options=list(slot.expanded_options),
                kernel_sizes=kernel_sizes,
                norm_layer=norm_layer,
            )
            for slot in layers
        )
        self.head = head.build(norm_layer)
        kaiming_init_(self)

    def forward(self, x: Tensor, arch: Any) -> Tensor:  # type: ignore[override]
        x = self.stem(x)
        for layer, spec in zip(self.layers, self._decode(arch)):
            if spec is not None:
                x = layer(x, spec)
        return self.head(x)

    def zero_init_residual_(self) -> int:
        """Every residual layer's project batchnorms (one per expansion) start at scale 0."""
        norms = [norm for layer in self.layers if layer.use_residual for norm in layer.project_norms.values()]
        for norm in norms:
            nn.init.zeros_(norm.weight)
        return len(norms)

    def subnet_state_dict(self, arch: Any) -> dict[str, Tensor]:
        """The chosen path's weights under the standalone ``MobileNetV3``'s names, as fresh
        tensors (slices of the shared weights are copied, so saving them stores only the path)."""
        state = {f"stem.{k}": v.clone() for k, v in self.stem.state_dict().items()}
        present = [(layer, spec) for layer, spec in zip(self.layers, self._decode(arch)) if spec is not None]
        for j, (layer, spec) in enumerate(present):
            state.update({f"blocks.{j}.{k}": v for k, v in layer.block_state_dict(spec).items()})
        state.update({f"head.{k}": v.clone() for k, v in self.head.state_dict().items()})
        return state
