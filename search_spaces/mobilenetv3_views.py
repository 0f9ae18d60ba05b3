"""Views of a ``mobilenetv3`` build derived from its layer specs: latency units and channel groups.

Every module is picked from the built ``MobileNetV3`` by its attributes (``stem``,
``blocks[j]`` and their ``expand``/``depthwise``/``se``/``project``, ``head.conv``,
``head.hidden``, ``head.output``); no state-dict string is written here.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Any, Sequence

from torch import nn

from child_models.init import kaiming_init_
from child_models.mobilenet import BlockSpec, HeadSpec, StemSpec
from child_models.ops import NormLayer, make_divisible
from search_spaces.base import LayerCost
from search_spaces.channels import ChannelGroup, Pick

STEM_CHAIN = "stem_out"
HEAD_GROUPS = ("head_conv", "head_hidden")
Layer = tuple[int, bool, "BlockSpec | None", tuple[str, str]]  # index, skippable, spec (None: skipped), (chain in, out)


def chain_name(layer: int) -> str:
    """The ``widths`` key (and channel-group name) of the stage that layer ``layer`` starts."""
    return f"l{layer}_out"


def expanded_name(layer: int) -> str:
    """The ``widths`` key (and channel-group name) of backbone layer ``layer``'s expanded width."""
    return f"l{layer}_expanded"


def block(position: int, network: nn.Module) -> nn.Module:
    """The ``position``-th present block of a standalone ``MobileNetV3``."""
    return network.blocks[position]


def _conv_bn(pick: Pick) -> list[Pick]:
    """The modules that write a ``ConvBNAct``'s output channels: its conv and its BN."""
    return [lambda net: pick(net).conv, lambda net: pick(net).norm]


def derive_channel_groups(*, layers: Sequence[Layer], stem: StemSpec, head: HeadSpec) -> list[ChannelGroup]:
    """The channels NetAdapt may prune, under ``build(arch, widths=...)``'s names.

    - ``stem_out``, ``l{i}_out``: a stage's channels, tied by its residual sums: the
      filters of every conv writing the stage (stem or projections, ranked by their
      joint L2 norm) and the inputs of every conv reading it are cut together;
    - ``l{i}_expanded``: a block's expanded channels (where it has an expand conv);
      where the block is skippable (it has an ``l{i}_skip`` decision) the group may
      also be removed with its block. Blocks without an expand conv, or residual
      only because width rounding made their input and output equal, are kept;
    - ``head_conv``, ``head_hidden``: the last conv and the classifier's hidden layer.

    The SE squeeze width follows its block (a non-prunable group). Widths that would
    change the structure are ``forbidden``: an expanded width equal to the block's
    input (its expand conv would go), or a stage as wide as the stage next to it
    across a stride-1 block (a residual sum would appear).
    """
    present = [(index, skippable, s, c) for index, skippable, s, c in layers if s is not None]
    size = {STEM_CHAIN: stem.out_channels}
    for _, _, spec, (chain_in, chain_out) in present:
        size[chain_in], size[chain_out] = spec.in_channels, spec.out_channels
    score: dict[str, list[Pick]] = {STEM_CHAIN: [lambda net: net.stem.conv]}
    writers: dict[str, list[Pick]] = {STEM_CHAIN: _conv_bn(lambda net: net.stem)}
    readers: dict[str, list[Pick]] = {STEM_CHAIN: []}
    forbidden: dict[str, set[int]] = {name: set() for name in size}
    groups: list[ChannelGroup] = []
    for j, (index, skippable, spec, (chain_in, chain_out)) in enumerate(present):
        whole_block: Pick = partial(block, j)
        if chain_out != chain_in:
            score[chain_out], writers[chain_out], readers[chain_out] = [], [], []
            if spec.stride == (1, 1):
                forbidden[chain_in].add(size[chain_out])
                forbidden[chain_out].add(size[chain_in])
        score[chain_out].append(lambda net, j=j: block(j, net).project.conv)
        writers[chain_out] += _conv_bn(lambda net, j=j: block(j, net).project)
        exp_writers = _conv_bn(lambda net, j=j: block(j, net).depthwise)
        exp_readers: list[Pick] = [lambda net, j=j: block(j, net).project.conv]
        removal = ((f"l{index}_skip", True),) if skippable else ()
        if spec.use_se:
            exp_readers.append(lambda net, j=j: block(j, net).se.fc1)
            exp_writers.append(lambda net, j=j: block(j, net).se.fc2)
            groups.append(ChannelGroup(
                name=f"l{index}_se_squeeze",
                channels=make_divisible(spec.expanded_channels // 4, 8),
                score=(lambda net, j=j: block(j, net).se.fc1,),
                writers=(lambda net, j=j: block(j, net).se.fc1,),
                readers=(lambda net, j=j: block(j, net).se.fc2,),
                prunable=False, removal=removal, block=whole_block,
            ))
        if spec.expanded_channels == spec.in_channels:  # no expand conv: the stage's channels
            writers[chain_in] += exp_writers
            readers[chain_in] += exp_readers
            continue
        readers[chain_in].append(lambda net, j=j: block(j, net).expand.conv)
        forbidden[chain_in].add(spec.expanded_channels)
        groups.append(ChannelGroup(
            name=expanded_name(index),
            channels=spec.expanded_channels,
            score=(lambda net, j=j: block(j, net).expand.conv,),
            writers=(*_conv_bn(lambda net, j=j: block(j, net).expand), *exp_writers),
            readers=tuple(exp_readers),
            forbidden=(spec.in_channels,), removal=removal, block=whole_block,
        ))
    readers[layers[-1][3][1]].append(lambda net: net.head.conv.conv)
    for name in score:
        groups.append(ChannelGroup(
            name=name, channels=size[name], score=tuple(score[name]), writers=tuple(writers[name]),
            readers=tuple(readers[name]), forbidden=tuple(sorted(forbidden[name])),
        ))
    groups.append(ChannelGroup(
        name="head_conv", channels=head.conv_channels, score=(lambda net: net.head.conv.conv,),
        writers=tuple(_conv_bn(lambda net: net.head.conv)), readers=(lambda net: net.head.hidden,),
    ))
    groups.append(ChannelGroup(
        name="head_hidden", channels=head.hidden_channels, score=(lambda net: net.head.hidden,),
        writers=(lambda net: net.head.hidden,), readers=(lambda net: net.head.output,),
    ))
    return groups


def strided(size: int, stride: int) -> int:
    """Output length of an odd-kernel, same-padded conv."""
    return (size - 1) // stride + 1


def unit(
    kind: str, spec: StemSpec | BlockSpec | HeadSpec, shape: tuple[int, int, int], norm: NormLayer
) -> LayerCost:
    """A latency-table unit whose key names ``kind``, every spec field and the input CxHxW."""
    fields = ",".join(f"{k}={_key_value(v)}" for k, v in asdict(spec).items())
    key = f"mobilenetv3.{kind}({fields},input={'x'.join(map(str, shape))})"

    def build() -> nn.Module:
        return kaiming_init_(spec.build(norm))

    return LayerCost(key=key, input_shape=shape, build=build)


def _key_value(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def derive_units(
    *, stem: StemSpec, blocks: Sequence[BlockSpec], head: HeadSpec, input_shape: tuple[int, int, int], norm: NormLayer
) -> list[LayerCost]:
    """See ``MobileNetV3Space.layers``: stem, every present block, head, each keyed by its spec."""
    channels, height, width = input_shape
    units = [unit("stem", stem, (channels, height, width), norm)]
    height, width = strided(height, stem.stride[0]), strided(width, stem.stride[1])
    for spec in blocks:
        units.append(unit("block", spec, (spec.in_channels, height, width), norm))
        height, width = strided(height, spec.stride[0]), strided(width, spec.stride[1])
    units.append(unit("head", head, (head.in_channels, height, width), norm))
    return units
