"""The pruning part of the space contract: channel groups and ``PrunableSpace``.

A space that supports channel pruning (NetAdapt) subclasses ``PrunableSpace``: it
accepts ``widths`` (``{group name: channels}``) in ``build`` and ``layers`` and says,
per arch, which channels are cut together (``channel_groups``). Pruning checks
``isinstance(space, PrunableSpace)``; nothing is looked up by attribute name.

A group names modules, not state-dict strings: every reference is a ``Pick``, a
function from the built network to one of its modules (``lambda net:
net.head.hidden``), so a renamed attribute fails loudly where it is used, and the
state-dict keys of the built network stay the network's business.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Mapping

from torch import nn

from search_spaces.base import Arch, ArchValue, InputShape, LayerCost, SearchSpace

Pick = Callable[[nn.Module], nn.Module]  # the standalone build -> one of its modules


def whole(network: nn.Module) -> nn.Module:
    return network


def checked_widths(widths: Mapping[str, int] | None, known: set[str], what: str) -> dict[str, int]:
    """``widths`` as a plain dict; ValueError for a name not in ``known`` or a bad count."""
    checked: dict[str, int] = {}
    for name, channels in (widths or {}).items():
        if name not in known:
            raise ValueError(f"widths: {name!r} is not {what}; known: {sorted(known)}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"widths: {name} must be a positive int, got {channels!r}")
        checked[name] = channels
    return checked


@dataclass(frozen=True)
class ChannelGroup:
    """Channels of a standalone build that are pruned together (NetAdapt).

    ``writers`` are the modules whose outputs are these channels (convs' filters, a
    BN's features, a Linear's outputs): every tensor of theirs is cut along dim 0.
    ``readers`` take them as input: their weight is cut along dim 1. ``score`` are the
    writers whose filters (dim-0 slices of ``weight``) are ranked by their joint L2
    norm (several when residual sums tie convs writing the same channels).
    A group that is not ``prunable`` follows the prunable ones (e.g. the SE squeeze
    width follows a block's expanded width) and is resized with them. ``forbidden``
    are widths that would change the network's structure (e.g. an expanded width
    equal to the block input drops the expand conv).

    A group whose filters feed a residual branch can go further than its narrowest
    width: with no channel left the branch adds nothing, so the block is the identity
    and is removed, where the space's arch can express that. ``removal`` holds the
    arch changes that remove it (e.g. ``(("l4_skip", True),)``; empty: the group is
    never pruned below its narrowest width) and ``block`` picks the removed module, so
    its weights can be dropped and the rest kept.
    """

    name: str
    channels: int
    score: tuple[Pick, ...] = field(compare=False, repr=False)
    writers: tuple[Pick, ...] = field(compare=False, repr=False)
    readers: tuple[Pick, ...] = field(compare=False, repr=False)
    prunable: bool = True
    forbidden: tuple[int, ...] = ()
    removal: tuple[tuple[str, ArchValue], ...] = ()
    block: Pick | None = field(default=None, compare=False, repr=False)


class PrunableSpace(SearchSpace):
    """A search space whose standalone builds can be channel-pruned.

    Subclasses implement ``channel_groups`` and take ``widths`` in ``build`` and
    ``layers`` (``None`` or ``{}``: the arch's own widths). ``parts`` names the
    modules that keep their identity when a block is removed, so pruning knows which
    weights go where in the smaller network.
    """

    @abstractmethod
    def build(
        self, arch: Arch, *, num_classes: int, input_shape: InputShape, widths: Mapping[str, int] | None = None
    ) -> nn.Module:
        """The standalone module; ``widths`` overrides the channels of named groups."""

    @abstractmethod
    def layers(
        self, arch: Arch, *, num_classes: int, input_shape: InputShape, widths: Mapping[str, int] | None = None
    ) -> list[LayerCost]:
        """Latency units of ``build(arch, widths=widths)``."""

    @abstractmethod
    def channel_groups(self, arch: Arch, *, widths: Mapping[str, int] | None = None) -> list[ChannelGroup]:
        """Every channel group of ``build(arch, widths=widths)`` (prunable ones and followers)."""

    def parts(self, arch: Arch) -> dict[str, Pick]:
        """Modules named by the space that keep their weights' layout when a block is
        removed (default: the whole network, for a space that never removes blocks)."""
        return {"network": whole}

    def prunable_widths(self, arch: Arch, widths: Mapping[str, int] | None = None) -> dict[str, int]:
        """``{group name: channels}`` of the prunable groups: the full ``widths`` of a build."""
        return {g.name: g.channels for g in self.channel_groups(arch, widths=dict(widths or {})) if g.prunable}
