"""Few-shot NAS (Zhao et al. 2021): less weight sharing, split on one decision.

The supernet trains as one (one-shot) for the first ``trainer.few_shot.at`` of the
epochs; then it is split into one sub-supernet per option of one categorical decision,
each a copy of the one-shot weights. From then on an arch trains and is scored only in
the sub-supernet of its option at that decision, so archs that differ there no longer
share (and fight over) weights. Under the sandwich rule each sub-supernet gets its own
sandwich group per step: its own largest, smallest and random archs (the decision
fixed to its option), distilled within the group.

``FewShotSupernet`` wraps the sub-supernets as one module: the search, the scorers, the
checkpoint and ``melnas-rank`` call it like a supernet, ``(x, arch) -> logits``. Whether
it has split is a buffer, so a checkpoint carries it and a resumed run routes as the
uninterrupted one did.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from nas.evaluate.cost import count_macs
from nas.io.checkpoint import preserved_rng_state
from search_spaces.base import Arch, ArchValue, Categorical, SearchSpace

AUTO = "auto"


@dataclass(frozen=True)
class FewShotSettings:
    """``trainer.few_shot``: ``split`` null (one supernet), ``auto`` or a decision's name."""

    split: str | None = None
    at: float = 0.5  # fraction of trainer.epochs trained one-shot before the split

    def __post_init__(self) -> None:
        if not 0.0 <= self.at < 1.0:
            raise ValueError(f"trainer.few_shot.at={self.at} (need 0 <= at < 1: the share of epochs before the split)")

    def split_epoch(self, epochs: int) -> int:
        return int(self.at * epochs)


def split_decision(space: SearchSpace, name: str, *, num_classes: int, input_shape: Sequence[int]) -> Categorical:
    """The decision to split on: ``name``, or for ``auto`` the categorical decision whose
    smallest option takes the most multiply-accumulates off the space's largest arch, the
    earliest of equals (a property of the space alone, the same on every machine)."""
    categoricals = {d.name: d for d in space.decisions if isinstance(d, Categorical) and d.size > 1}
    if name != AUTO:
        if name not in categoricals:
            raise ValueError(f"trainer.few_shot.split={name!r} is not a categorical decision of {space.name}: "
                             f"choose auto or one of {', '.join(categoricals)}")
        return categoricals[name]
    if not space.options_by_size:
        raise ValueError(f"trainer.few_shot.split=auto needs the largest arch, and space {space.name!r} does not "
                         f"list its options by size: name the decision instead, one of {', '.join(categoricals)}")
    largest = space.extreme_arch(largest=True)

    def macs(arch: Arch) -> int:
        return count_macs(space.build(arch, num_classes=num_classes, input_shape=input_shape), input_shape)

    full = macs(largest)
    saved = {n: full - macs(with_value(space, largest, n, d.options[0])) for n, d in categoricals.items()}
    return categoricals[max(saved, key=saved.__getitem__)]  # ties: the earliest decision


def with_value(space: SearchSpace, arch: Arch, name: str, value: ArchValue) -> Arch:
    """``arch`` with decision ``name`` set to ``value``."""
    return space.arch({**arch.as_dict(), name: value})


class FewShotSupernet(nn.Module):
    """One sub-supernet per option of ``decision``; sub-supernet 0 stands for all until ``split``."""

    def __init__(self, supernet: nn.Module, decision: Categorical) -> None:
        super().__init__()
        self.decision = decision
        self.subs = nn.ModuleList([supernet] + [copy.deepcopy(supernet) for _ in decision.options[1:]])
        self.register_buffer("is_split", torch.tensor(False))

    def split(self) -> None:
        """Every sub-supernet starts from sub-supernet 0's (the one-shot) weights."""
        with torch.no_grad():
            for sub in self.subs[1:]:
                sub.load_state_dict(self.subs[0].state_dict())
            self.is_split.fill_(True)

    def sub_for(self, arch: Arch) -> nn.Module:
        if not bool(self.is_split):
            return self.subs[0]
        return self.subs[self.decision.options.index(arch[self.decision.name])]

    def forward(self, x: Tensor, arch: Arch) -> Tensor:
        return self.sub_for(arch)(x, arch)


def per_option(space: SearchSpace, decision: Categorical, group: Sequence[Arch]) -> list[Arch]:
    """The group once per option of ``decision``, the decision fixed to that option: each
    sub-supernet trains a group of its own (its own sandwich extremes)."""
    return [with_value(space, arch, decision.name, option) for option in decision.options for arch in group]


def build_supernet(space: SearchSpace, few_shot: FewShotSettings, *, num_classes: int,
                   input_shape: Sequence[int], zero_init_residual: bool = False) -> nn.Module:
    """The search's supernet: the space's own (its residual blocks starting as the identity
    with ``zero_init_residual``), wrapped for ``trainer.few_shot.split``."""
    supernet = space.supernet(num_classes=num_classes, input_shape=tuple(input_shape))
    if zero_init_residual and supernet.zero_init_residual_() == 0:
        raise ValueError(f"trainer.zero_init_residual=true: the {space.name} supernet has no residual blocks "
                         "to start at zero; set it to false")
    if few_shot.split is None:
        return supernet
    with preserved_rng_state():  # "auto" builds models to count MACs: leave torch's draws as they were
        decision = split_decision(space, few_shot.split, num_classes=num_classes, input_shape=input_shape)
    return FewShotSupernet(supernet, decision)


def split_if_due(supernet: nn.Module, few_shot: FewShotSettings, *, epoch: int, epochs: int,
                 log: Callable[[str], None]) -> None:
    """Split a few-shot supernet when ``epoch`` reaches ``few_shot.at`` of ``epochs``, once
    (a resumed run finds it split in its checkpoint), and ``log`` it."""
    if not isinstance(supernet, FewShotSupernet) or bool(supernet.is_split) or epoch < few_shot.split_epoch(epochs):
        return
    supernet.split()
    options = ", ".join(str(o) for o in supernet.decision.options)
    log(f"few-shot: before epoch {epoch + 1}, split the supernet into {len(supernet.subs)} on "
        f"{supernet.decision.name} ({options})")
