"""Channel pruning of a built network: remove the filters of smallest L2 norm from a
channel group and rebuild a smaller standalone model with the kept weights copied.

A space that supports pruning says which channels can be removed together through
``space.channel_groups(arch, *, widths)`` (``search_spaces.base.ChannelGroup``): each
group names the weights whose dim-0 slices are its filters (ranked by L2 norm, as in
the NetAdapt code; by their joint norm where residual sums tie several convs' outputs)
and every ``(state_dict key, dim)`` sized by it, so that producers (convs' filters and
their BNs) and consumers (the next convs' input channels) are cut consistently.
A group on a residual branch may also be pruned to nothing: the block is then the
identity, the arch is changed to skip it (``ChannelGroup.removal``) and its weights
are dropped while every other tensor keeps its place in the smaller network.
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


def filter_ranking(*weights: Tensor) -> Tensor:
    """Indices of the filters (dim-0 slices), largest L2 norm first (ties: lower index).
    Several weights writing the same channels are ranked by their joint norm."""
    squares = sum(w.detach().flatten(1).pow(2).sum(dim=1) for w in weights)
    return torch.sort(-squares, stable=True).indices


def kept_filters(keep: int, *weights: Tensor) -> Tensor:
    """The ``keep`` filters of largest (joint) L2 norm, in their original order (int64 ``[keep]``)."""
    if not weights or any(w.shape[0] != weights[0].shape[0] for w in weights):
        raise ValueError(f"need weights with one filter count, got {[tuple(w.shape) for w in weights]}")
    if not 1 <= keep <= weights[0].shape[0]:
        raise ValueError(f"cannot keep {keep} of {weights[0].shape[0]} filters")
    return torch.sort(filter_ranking(*weights)[:keep]).values


def prune_state_dict(
    state: Mapping[str, Tensor], old_groups: list[ChannelGroup], new_groups: list[ChannelGroup]
) -> dict[str, Tensor]:
    """Cut every group of ``old_groups`` down to its size in ``new_groups`` (matched by name).

    The kept filters are ranked on the unpruned ``state``; every tensor listed by a
    group is sliced along its dim (a tensor in two groups is sliced along both). A
    group absent from ``new_groups`` must be a removed block's: every tensor under its
    ``module`` prefix is left out of the result.
    """
    new_sizes = {g.name: g.channels for g in new_groups}
    removed = [g for g in old_groups if g.name not in new_sizes]
    unexplained = sorted(g.name for g in removed if not g.module) + sorted(
        set(new_sizes) - {g.name for g in old_groups}
    )
    if unexplained:
        raise ValueError(
            f"pruning changed the network's structure: groups {sorted(g.name for g in old_groups)} "
            f"became {sorted(new_sizes)} ({unexplained} neither kept nor removed with their block)"
        )
    prefixes = tuple(g.module for g in removed)
    removed_names = {g.name for g in removed}
    pruned = {k: v.detach().clone() for k, v in state.items() if not k.startswith(prefixes)}
    for group in old_groups:
        if group.name in removed_names:
            continue
        size = new_sizes[group.name]
        if size > group.channels:
            raise ValueError(f"{group.name}: pruning cannot widen {group.channels} to {size} channels")
        if size == group.channels:
            continue
        scores = [state[key] for key in group.score]
        keep = kept_filters(size, *scores).to(scores[0].device)
        for key, dim in group.tensors:
            if key.startswith(prefixes):  # part of a block removed in the same step
                continue
            if key not in pruned:
                raise ValueError(f"channel group {group.name} names {key!r}, which the model does not have")
            pruned[key] = pruned[key].index_select(dim, keep)
    return pruned


def _renumbered(old: Mapping[str, Tensor], new: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``old``'s tensors under ``new``'s names, matched in order.

    After a block is removed the modules that followed it move up one place
    (``blocks.5.`` becomes ``blocks.4.``): same tensors, same order, new indices.
    Names must agree once their indices are ignored, and shapes exactly.
    """
    if len(old) != len(new):
        raise ValueError(f"pruned weights have {len(old)} tensors, the pruned network {len(new)}")
    renamed = {}
    for (old_key, tensor), (new_key, target) in zip(old.items(), new.items()):
        if _without_indices(old_key) != _without_indices(new_key) or tensor.shape != target.shape:
            raise ValueError(
                f"pruned weight {old_key} {tuple(tensor.shape)} does not fit {new_key} {tuple(target.shape)}"
            )
        renamed[new_key] = tensor
    return renamed


def _without_indices(key: str) -> tuple[str, ...]:
    return tuple(part for part in key.split(".") if not part.isdigit())


def _check_only_removals(
    arch: Arch, new_arch: Arch, old_groups: list[ChannelGroup], new_groups: list[ChannelGroup]
) -> None:
    """``new_arch`` must be ``arch`` with exactly the removals of the groups it drops."""
    kept = {g.name for g in new_groups}
    removed = [g for g in old_groups if g.name not in kept]
    expected = arch.as_dict()
    for group in removed:
        expected.update(group.removal)
    changed = sorted(name for name, value in new_arch.as_dict().items() if expected.get(name) != value)
    if changed:
        offered = sorted({name for g in old_groups for name, _ in g.removal})
        raise ValueError(
            f"new_arch changes {changed}, which pruning cannot do: it only removes a block "
            f"whose channel groups offer it (ChannelGroup.removal; this arch offers {offered or 'none'}), "
            f"together with those groups (removed here: {sorted(g.name for g in removed) or 'none'})"
        )


def prune_model(
    space: SearchSpace,
    arch: Arch,
    model: nn.Module,
    *,
    widths: Mapping[str, int],
    new_widths: Mapping[str, int],
    num_classes: int,
    input_shape: InputShape,
    new_arch: Arch | None = None,
) -> nn.Module:
    """A standalone ``space.build(new_arch, widths=new_widths)`` holding ``model``'s kept weights.

    ``model`` is the build of ``arch`` with ``widths``; every group in ``new_widths``
    must be at most as wide. ``new_arch`` (default: ``arch``) may differ only by
    removals (``ChannelGroup.removal``). The result sits on ``model``'s device, in
    ``model``'s train/eval mode; the caller's torch RNG is left untouched (building
    draws init weights, then overwritten).
    """
    new_arch = arch if new_arch is None else new_arch
    old_groups = channel_groups(space, arch, widths)
    new_groups = channel_groups(space, new_arch, new_widths)
    _check_only_removals(arch, new_arch, old_groups, new_groups)
    state = prune_state_dict(model.state_dict(), old_groups, new_groups)
    with torch.random.fork_rng(devices=[]):
        pruned = space.build(new_arch, num_classes=num_classes, input_shape=input_shape, widths=dict(new_widths))
    pruned.load_state_dict(_renumbered(state, pruned.state_dict()), strict=True)
    device = next(model.parameters()).device
    return pruned.to(device).train(model.training)
