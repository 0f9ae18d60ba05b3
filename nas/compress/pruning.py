"""Channel pruning of a built network: remove the filters of smallest L2 norm from a
channel group and rebuild a smaller standalone model with the kept weights copied.

A space that supports pruning is a ``search_spaces.channels.PrunableSpace`` and says
which channels can be removed together through ``space.channel_groups(arch, *, widths)``:
each group picks the modules whose filters are ranked (by L2 norm, as in the NetAdapt
code; by their joint norm where residual sums tie several convs' outputs), the modules
that write its channels and those that read them, so that producers (convs' filters and
their BNs) and consumers (the next convs' input channels) are cut consistently. The
picks are resolved to the built network's state-dict keys here, by module identity.
A group on a residual branch may also be pruned to nothing: the block is then the
identity, the arch is changed to skip it (``ChannelGroup.removal``) and its weights
are dropped while every other tensor keeps its place in the smaller network.
This module knows no concrete space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor, nn

from search_spaces.base import Arch, InputShape, SearchSpace
from search_spaces.channels import ChannelGroup, Pick, PrunableSpace


def prunable(space: SearchSpace) -> PrunableSpace:
    """``space`` if it supports channel pruning, else a ValueError saying how to add it."""
    if not isinstance(space, PrunableSpace):
        raise ValueError(
            f"space {space.name!r} is not a PrunableSpace, so its models cannot be pruned: subclass "
            "search_spaces.channels.PrunableSpace (channel_groups(arch, *, widths) and a widths "
            "argument in build() and layers())"
        )
    return space


def channel_groups(space: SearchSpace, arch: Arch, widths: Mapping[str, int] | None = None) -> list[ChannelGroup]:
    """All channel groups of ``space.build(arch, widths=widths)`` (prunable ones and followers)."""
    return list(prunable(space).channel_groups(arch, widths=dict(widths or {})))


def prunable_widths(space: SearchSpace, arch: Arch, widths: Mapping[str, int] | None = None) -> dict[str, int]:
    """``{group name: channels}`` of the prunable groups: the full ``widths`` of a build."""
    return prunable(space).prunable_widths(arch, widths)


@dataclass(frozen=True)
class KeyedGroup:
    """A ``ChannelGroup`` resolved against one built network: its picks as state-dict keys."""

    name: str
    channels: int
    score: tuple[str, ...]
    tensors: tuple[tuple[str, int], ...]  # (key, dim) of every tensor sized by the group
    module: str = ""  # state-dict prefix of the block removed with the group ("": none)


class _Keys:
    """State-dict names of a network's modules, found by identity."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.names = {id(m): name for name, m in network.named_modules()}

    def prefix(self, pick: Pick, owner: str) -> str:
        module = pick(self.network)
        if id(module) not in self.names:
            raise ValueError(f"channel group {owner} picks a {type(module).__name__} that is not part of the network")
        name = self.names[id(module)]
        return f"{name}." if name else ""

    def outputs(self, pick: Pick, owner: str) -> list[tuple[str, int]]:
        prefix, module = self.prefix(pick, owner), pick(self.network)
        own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        return [(prefix + name, 0) for name, tensor in own if tensor is not None and tensor.ndim >= 1]


def keyed_groups(network: nn.Module, groups: list[ChannelGroup]) -> list[KeyedGroup]:
    """``groups`` with every pick turned into ``network``'s state-dict keys."""
    keys = _Keys(network)
    resolved = []
    for g in groups:
        tensors = [t for pick in g.writers for t in keys.outputs(pick, g.name)]
        tensors += [(keys.prefix(pick, g.name) + "weight", 1) for pick in g.readers]
        resolved.append(KeyedGroup(
            name=g.name,
            channels=g.channels,
            score=tuple(keys.prefix(pick, g.name) + "weight" for pick in g.score),
            tensors=tuple(tensors),
            module=keys.prefix(g.block, g.name) if g.block is not None else "",
        ))
    return resolved


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
    state: Mapping[str, Tensor], old_groups: list[KeyedGroup], new_groups: list[ChannelGroup]
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


def _moved(
    space: PrunableSpace, old: tuple[Arch, nn.Module], new: tuple[Arch, nn.Module], state: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """``state`` (keys of the old network) under the new network's keys.

    The space's ``parts`` name the modules that survive a block removal (``l5`` stays
    ``l5`` while its place in ``blocks`` moves up one); each part's tensors keep their
    names inside the part.
    """
    old_arch, old_net = old
    new_arch, new_net = new
    old_keys, new_keys = _Keys(old_net), _Keys(new_net)
    old_parts, new_parts = space.parts(old_arch), space.parts(new_arch)
    moves = sorted(
        ((old_keys.prefix(pick, part), new_keys.prefix(new_parts[part], part)) for part, pick in old_parts.items() if part in new_parts),
        key=lambda pair: -len(pair[0]),
    )
    moved = {}
    for key, tensor in state.items():
        source, target = next(((a, b) for a, b in moves if key.startswith(a)), (None, None))
        if source is None:
            raise ValueError(f"pruned weight {key} belongs to no part of the network ({sorted(old_parts)})")
        moved[target + key[len(source):]] = tensor
    return moved


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
    space = prunable(space)
    new_arch = arch if new_arch is None else new_arch
    old_groups = channel_groups(space, arch, widths)
    new_groups = channel_groups(space, new_arch, new_widths)
    _check_only_removals(arch, new_arch, old_groups, new_groups)
    state = prune_state_dict(model.state_dict(), keyed_groups(model, old_groups), new_groups)
    with torch.random.fork_rng(devices=[]):
        pruned = space.build(new_arch, num_classes=num_classes, input_shape=input_shape, widths=dict(new_widths))
    try:
        pruned.load_state_dict(_moved(space, (arch, model), (new_arch, pruned), state), strict=True)
    except RuntimeError as err:
        raise ValueError(f"pruned weights do not fit the pruned network: {err}") from err
    device = next(model.parameters()).device
    return pruned.to(device).train(model.training)
