"""Channel pruning of a built network: remove the filters of smallest L2 norm from a
channel group and rebuild a smaller standalone model with the kept weights copied.

A space that supports pruning says which channels can be removed together through
``space.channel_groups(arch, *, widths)`` (``search_spaces.base.ChannelGroup``): each
group names the weight whose dim-0 slices are its filters (ranked by L2 norm, as in
the NetAdapt code) and every ``(state_dict key, dim)`` sized by it, so that producers
(a conv's filters and their BN) and consumers (the next conv's input channels) are cut
consistently. Channels tied by residual or skip sums are not offered by the spaces.
This module knows no concrete space.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from search_spaces.base import Arch, ChannelGroup, InputShape, SearchSpace


def channel_groups(space: SearchSpace, arch: Arch, widths: Mapping[str, int] | None = None) -> list[ChannelGroup]:
    """All channel groups of ``space.build(arch, widths=widths)`` (prunable ones and followers)."""
    method = getattr(space, "channel_groups", None)
    if method is None:
        raise ValueError(
            f"space {space.name!r} declares no channel groups, so its models cannot be pruned: "
            "give it channel_groups(arch, *, widths) and a widths argument in build() and layers()"
        )
    return list(method(arch, widths=dict(widths or {})))


def prunable_widths(space: SearchSpace, arch: Arch, widths: Mapping[str, int] | None = None) -> dict[str, int]:
    """``{group name: channels}`` of the prunable groups: the full ``widths`` of a build."""
    return {g.name: g.channels for g in channel_groups(space, arch, widths) if g.prunable}


def candidate_widths(channels: int, *, divisor: int, min_channels: int, forbidden: tuple[int, ...] = ()) -> list[int]:
    """Narrower widths to try, widest first: multiples of ``divisor`` below ``channels``,
    at least ``min_channels``, none of ``forbidden``."""
    if divisor < 1 or min_channels < 1:
        raise ValueError(f"divisor and min_channels must be >= 1, got {divisor}, {min_channels}")
    top = (channels - 1) // divisor * divisor
    return [w for w in range(top, 0, -divisor) if w >= min_channels and w not in forbidden]


def filter_ranking(weight: Tensor) -> Tensor:
    """Indices of ``weight``'s dim-0 slices (filters), largest L2 norm first (ties: lower index)."""
    norms = weight.detach().flatten(1).norm(dim=1)
    return torch.sort(-norms, stable=True).indices


def kept_filters(weight: Tensor, keep: int) -> Tensor:
    """The ``keep`` filters of largest L2 norm, in their original order (int64 ``[keep]``)."""
    if not 1 <= keep <= weight.shape[0]:
        raise ValueError(f"cannot keep {keep} of {weight.shape[0]} filters")
    return torch.sort(filter_ranking(weight)[:keep]).values


def prune_state_dict(
    state: Mapping[str, Tensor], old_groups: list[ChannelGroup], new_groups: list[ChannelGroup]
) -> dict[str, Tensor]:
    """Cut every group of ``old_groups`` down to its size in ``new_groups`` (matched by name).

    The kept filters are ranked on the unpruned ``state``; every tensor listed by a
    group is sliced along its dim (a tensor in two groups is sliced along both).
    """
    new_sizes = {g.name: g.channels for g in new_groups}
    if set(new_sizes) != {g.name for g in old_groups}:
        raise ValueError(
            f"pruning changed the network's structure: groups {sorted(g.name for g in old_groups)} "
            f"became {sorted(new_sizes)}"
        )
    pruned = {k: v.detach().clone() for k, v in state.items()}
    for group in old_groups:
        size = new_sizes[group.name]
        if size > group.channels:
            raise ValueError(f"{group.name}: pruning cannot widen {group.channels} to {size} channels")
        if size == group.channels:
            continue
        keep = kept_filters(state[group.score], size).to(state[group.score].device)
        for key, dim in group.tensors:
            if key not in pruned:
                raise ValueError(f"channel group {group.name} names {key!r}, which the model does not have")
            pruned[key] = pruned[key].index_select(dim, keep)
    return pruned


def prune_model(
    space: SearchSpace,
    arch: Arch,
    model: nn.Module,
    *,
    widths: Mapping[str, int],
    new_widths: Mapping[str, int],
    num_classes: int,
    input_shape: InputShape,
) -> nn.Module:
    """A standalone ``space.build(arch, widths=new_widths)`` holding ``model``'s kept weights.

    ``model`` is the build of ``widths``; every group in ``new_widths`` must be at most
    as wide. The result sits on ``model``'s device, in ``model``'s train/eval mode; the
    caller's torch RNG is left untouched (building draws init weights, then overwritten).
    """
    old_groups = channel_groups(space, arch, widths)
    new_groups = channel_groups(space, arch, new_widths)
    state = prune_state_dict(model.state_dict(), old_groups, new_groups)
    with torch.random.fork_rng(devices=[]):
        pruned = space.build(arch, num_classes=num_classes, input_shape=input_shape, widths=dict(new_widths))
    pruned.load_state_dict(state, strict=True)
    device = next(model.parameters()).device
    return pruned.to(device).train(model.training)
