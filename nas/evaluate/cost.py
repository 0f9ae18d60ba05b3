"""Model cost: parameter counts and multiply-accumulates (MACs).

MACs are counted by PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``
(convolutions, linear layers, matrix products), at batch 1, in eval mode and
without autograd: MACs = FLOPs / 2. Element-wise work (batchnorm, activations,
pooling, additions) is not counted, which is the convention of the MobileNet and
MnasNet papers and of torchvision's published figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

if TYPE_CHECKING:  # cost stands below the spaces: type hints only, no runtime import
    from search_spaces.base import Arch, InputShape, SearchSpace


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"input_shape must be positive sizes without the batch dim, got {input_shape}")
    return shape


def _count_forward(model: nn.Module, input_shape: Sequence[int], num_inputs: int):
    """Run ``model`` once at batch 1 on zeros in eval mode; return (output, FLOPs)."""
    shape = _check_shape(input_shape)
    if num_inputs < 1:
        raise ValueError(f"num_inputs must be >= 1, got {num_inputs}")
    device = next(iter(model.parameters()), torch.empty(0)).device
    inputs = [torch.zeros((1, *shape), device=device) for _ in range(num_inputs)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = model(*inputs)
        return out, counter.get_total_flops()
    finally:
        model.train(was_training)


def count_macs(model: nn.Module, input_shape: Sequence[int], *, num_inputs: int = 1) -> int:
    """MACs of one forward pass at batch 1 on inputs of ``input_shape`` (no batch dim).

    ``num_inputs`` > 1 calls ``model(x_1, ..., x_n)`` with that many inputs of the
    same shape (a multi-input unit of a latency table).
    """
    _, flops = _count_forward(model, input_shape, num_inputs)
    return int(flops) // 2


@dataclass(frozen=True)
class UnitCost:
    """One row of a model summary: a ``LayerCost`` unit with its size and output."""

    key: str
    params: int
    macs: int
    input_shape: tuple[int, ...]
    num_inputs: int
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelSummary:
    """Per-unit costs of a built arch and the totals of the whole standalone model.

    The totals are counted on ``space.build(arch)`` itself, not summed over units,
    so glue the units leave out (if any) is still counted.
    """

    space: str
    arch: dict[str, Any]
    arch_string: str
    num_classes: int
    input_shape: tuple[int, ...]
    params: int
    macs: int
    layers: tuple[UnitCost, ...]

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["layers"] = [
            {**asdict(u), "input_shape": list(u.input_shape), "output_shape": list(u.output_shape)}
            for u in self.layers
        ]
        return data


def _shape_of(output: Any) -> tuple[int, ...]:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape[1:])
    raise TypeError(f"a cost unit must return one tensor, got {type(output).__name__}")


def model_summary(
    space: "SearchSpace", arch: "Arch", *, num_classes: int, input_shape: "InputShape"
) -> ModelSummary:
    """Params and MACs per ``space.layers(...)`` unit (output shapes at batch 1) and in total.

    Units with the same key are the same unit (the ``LayerCost`` contract): each key
    is built and counted once.
    """
    by_key: dict[str, UnitCost] = {}
    rows = []
    for unit in space.layers(arch, num_classes=num_classes, input_shape=input_shape):
        if unit.key not in by_key:
            module = unit.build()
            out, flops = _count_forward(module, unit.input_shape, unit.num_inputs)
            by_key[unit.key] = UnitCost(
                key=unit.key,
                params=count_params(module),
                macs=int(flops) // 2,
                input_shape=tuple(unit.input_shape),
                num_inputs=unit.num_inputs,
                output_shape=_shape_of(out),
            )
        rows.append(by_key[unit.key])
    model = space.build(arch, num_classes=num_classes, input_shape=input_shape)
    return ModelSummary(
        space=space.name,
        arch=arch.to_json_dict(),
        arch_string=space.arch_string(arch),
        num_classes=num_classes,
        input_shape=tuple(input_shape),
        params=count_params(model),
        macs=count_macs(model, input_shape),
        layers=tuple(rows),
    )
