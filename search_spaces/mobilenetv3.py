"""The ``mobilenetv3`` space: inverted-residual layers on a MobileNetV3 backbone.

The backbone (``small`` or ``large``) fixes what MobileNetV3 fixes: the layer count,
each layer's output channels and stride, the stem and the head. Per layer the search
picks (labels ``l{i}_*``):

- ``l{i}_kernel``: depthwise kernel, from ``kernels`` (default 3, 5, 7);
- ``l{i}_expand``: expansion ratio, from ``expand_ratios`` plus the reference
  network's own ratio for that layer (so both torchvision networks are points of the
  space; e.g. 2.3 = 184/80, 3.67 ~ 88/24, 4.5 = 72/16);
- ``l{i}_se``: squeeze-and-excite on/off;
- ``l{i}_act``: ``relu`` or ``hswish``;
- ``l{i}_skip``: drop the block (identity), offered only where identity is valid
  (stride 1 and as many input as output channels at width 1.0), so the search varies
  depth. A skipped layer's other choices do not change the network (its hash does);
  ``arch_from_string(arch_string(arch))`` gives the canonical arch.

The decisions depend only on ``backbone``, ``kernels`` and ``expand_ratios``, so an
arch searched on a narrow model loads into a wider one (``width``, ``stem_stride``,
``head_channels`` and the input shape are free).

Channel counts follow torchvision exactly: every width-1.0 count (stem, outputs,
expanded = ``round(in_1.0 * ratio)``, classifier hidden) is scaled by ``width`` and
rounded with ``make_divisible(c * width, 8)``; the last conv has 6x the last block's
channels. Presets ``mobilenetv3_large``/``mobilenetv3_small`` therefore reproduce
``torchvision.models.mobilenet_v3_large/small`` (5,483,032 / 2,542,856 parameters at
1000 classes, width 1.0).

Input is ``(channels, n_mels, frames)``; the stem stride is set per axis
(``stem_stride: [freq, time]``), and global pooling in the head lets the number of
frames vary. The supernet shares weights by slicing (see
``child_models.mobilenet.InvertedResidualChoices``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Mapping, Sequence

from torch import Tensor, nn

from child_models.init import kaiming_init_
from child_models.mobilenet import (
    BlockSpec,
    HeadSpec,
    InvertedResidualChoices,
    MobileNetV3,
    StemSpec,
)
from child_models.ops import make_divisible, pair
from search_spaces.base import (
    Arch,
    Categorical,
    ChannelGroup,
    InputShape,
    LayerCost,
    SearchSpace,
    Supernet,
)

ACTIVATION_TOKENS = {"relu": "re", "hswish": "hs"}
HEAD_EXPANSION = 6  # torchvision: last conv = 6 x the last block's output channels


@dataclass(frozen=True)
class LayerRow:
    """One layer of a reference backbone at width 1.0 (torchvision's bneck table)."""

    out_channels: int
    stride: int
    kernel: int
    expand: float
    se: bool
    activation: str


@dataclass(frozen=True)
class Backbone:
    stem_channels: int
    head_channels: int  # hidden width of the classifier at width 1.0
    layers: tuple[LayerRow, ...]


_R = LayerRow
BACKBONES: dict[str, Backbone] = {
    "large": Backbone(
        stem_channels=16,
        head_channels=1280,
        layers=(
            _R(out_channels=16, stride=1, kernel=3, expand=1, se=False, activation="relu"),
            _R(out_channels=24, stride=2, kernel=3, expand=4, se=False, activation="relu"),
            _R(out_channels=24, stride=1, kernel=3, expand=3, se=False, activation="relu"),
            _R(out_channels=40, stride=2, kernel=5, expand=3, se=True, activation="relu"),
            _R(out_channels=40, stride=1, kernel=5, expand=3, se=True, activation="relu"),
            _R(out_channels=40, stride=1, kernel=5, expand=3, se=True, activation="relu"),
            _R(out_channels=80, stride=2, kernel=3, expand=6, se=False, activation="hswish"),
            _R(out_channels=80, stride=1, kernel=3, expand=2.5, se=False, activation="hswish"),
            _R(out_channels=80, stride=1, kernel=3, expand=2.3, se=False, activation="hswish"),
            _R(out_channels=80, stride=1, kernel=3, expand=2.3, se=False, activation="hswish"),
            _R(out_channels=112, stride=1, kernel=3, expand=6, se=True, activation="hswish"),
            _R(out_channels=112, stride=1, kernel=3, expand=6, se=True, activation="hswish"),
            _R(out_channels=160, stride=2, kernel=5, expand=6, se=True, activation="hswish"),
            _R(out_channels=160, stride=1, kernel=5, expand=6, se=True, activation="hswish"),
            _R(out_channels=160, stride=1, kernel=5, expand=6, se=True, activation="hswish"),
        ),
    ),
    "small": Backbone(
        stem_channels=16,
        head_channels=1024,
        layers=(
            _R(out_channels=16, stride=2, kernel=3, expand=1, se=True, activation="relu"),
            _R(out_channels=24, stride=2, kernel=3, expand=4.5, se=False, activation="relu"),
            _R(out_channels=24, stride=1, kernel=3, expand=3.67, se=False, activation="relu"),
            _R(out_channels=40, stride=2, kernel=5, expand=4, se=True, activation="hswish"),
            _R(out_channels=40, stride=1, kernel=5, expand=6, se=True, activation="hswish"),
            _R(out_channels=40, stride=1, kernel=5, expand=6, se=True, activation="hswish"),
            _R(out_channels=48, stride=1, kernel=5, expand=3, se=True, activation="hswish"),
            _R(out_channels=48, stride=1, kernel=5, expand=3, se=True, activation="hswish"),
            _R(out_channels=96, stride=2, kernel=5, expand=6, se=True, activation="hswish"),
            _R(out_channels=96, stride=1, kernel=5, expand=6, se=True, activation="hswish"),
            _R(out_channels=96, stride=1, kernel=5, expand=6, se=True, activation="hswish"),
        ),
    ),
}
PRESET_BACKBONES = {"mobilenetv3_large": "large", "mobilenetv3_small": "small"}


def _number(value: Any, setting: str) -> int | float:
    """A positive number, as an int when integral (``4.0 -> 4``) so that JSON stays tidy."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{setting} must be positive numbers, got {value!r}")
    return int(value) if float(value).is_integer() else float(value)


def _odd_sizes(values: Sequence[int], setting: str) -> tuple[int, ...]:
    sizes = tuple(values)
    if not sizes or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0 for k in sizes):
        raise ValueError(f"{setting} must be a non-empty list of positive odd ints, got {list(sizes)}")
    return tuple(sorted(set(sizes)))


@dataclass(frozen=True)
class _LayerPlan:
    """What is fixed about layer ``index`` once the space is configured."""

    index: int
    in_channels: int
    out_channels: int
    stride: tuple[int, int]
    expanded: dict[int | float, int]  # ratio option -> expanded channels (width applied)
    skippable: bool


class MobileNetV3Space(SearchSpace):
    """Kernel / expansion / SE / activation / depth search on a MobileNetV3 backbone.

    Args:
        backbone: ``"small"`` or ``"large"``: the stage table (channels, strides, stem,
            head) of torchvision's MobileNetV3-Small or -Large.
        width: multiplier on every channel count (torchvision's ``width_mult``).
        kernels: depthwise kernel sizes to choose from (odd).
        expand_ratios: expansion ratios to choose from; each layer also offers its
            reference ratio.
        stem_stride: stem stride ``(freq, time)`` (or one int for both).
        head_channels: classifier hidden width before width scaling; ``None`` = the
            backbone's (1024 small, 1280 large).
        dropout: classifier dropout.
        bn_momentum, bn_eps: every batchnorm's (torchvision: 0.01, 0.001).
    """

    name = "mobilenetv3"

    def __init__(
        self,
        *,
        backbone: str = "small",
        width: float = 1.0,
        kernels: Sequence[int] = (3, 5, 7),
        expand_ratios: Sequence[float] = (3, 4, 6),
        stem_stride: int | Sequence[int] = (2, 2),
        head_channels: int | None = None,
        dropout: float = 0.2,
        bn_momentum: float = 0.01,
        bn_eps: float = 0.001,
    ) -> None:
        if backbone not in BACKBONES:
            raise ValueError(f"search_space.backbone={backbone!r}: choose one of {sorted(BACKBONES)}")
        self.backbone = backbone
        self.width = _number(width, "search_space.width")
        self.kernels = _odd_sizes(kernels, "search_space.kernels")
        self.expand_ratios = tuple(sorted({_number(r, "search_space.expand_ratios") for r in expand_ratios}))
        if not self.expand_ratios:
            raise ValueError("search_space.expand_ratios is empty: give at least one ratio")
        try:
            self.stem_stride = pair(stem_stride)
        except TypeError:
            raise ValueError(f"search_space.stem_stride must be [freq, time] ints, got {stem_stride!r}") from None
        if head_channels is not None and (
            isinstance(head_channels, bool) or not isinstance(head_channels, int) or head_channels < 1
        ):
            raise ValueError(f"search_space.head_channels must be a positive int or null, got {head_channels!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"search_space.dropout must be in [0, 1), got {dropout}")
        if not 0.0 < bn_momentum <= 1.0 or bn_eps <= 0:
            raise ValueError(
                f"search_space.bn_momentum must be in (0, 1] and bn_eps > 0, got {bn_momentum}, {bn_eps}"
            )
        self.head_channels = head_channels
        self.dropout = float(dropout)
        self.bn_momentum = float(bn_momentum)
        self.bn_eps = float(bn_eps)
        self._table = BACKBONES[backbone]
        self._plans = self._plan_layers()
        self._decisions = self._make_decisions()

    # ---- configuration ------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments with ``_target_``: a YAML/JSON dict that rebuilds this space."""
        return {"_target_": f"{type(self).__module__}.{type(self).__qualname__}", **self._kwargs()}

    def _kwargs(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "width": self.width,
            "kernels": list(self.kernels),
            "expand_ratios": list(self.expand_ratios),
            "stem_stride": list(self.stem_stride),
            "head_channels": self.head_channels,
            "dropout": self.dropout,
            "bn_momentum": self.bn_momentum,
            "bn_eps": self.bn_eps,
        }

    def _scale(self, channels: float) -> int:
        return make_divisible(channels * self.width, 8)

    def _plan_layers(self) -> tuple[_LayerPlan, ...]:
        plans = []
        ref_in = self._table.stem_channels
        for i, row in enumerate(self._table.layers):
            in_ch, out_ch = self._scale(ref_in), self._scale(row.out_channels)
            ratios = sorted(set(self.expand_ratios) | {_number(row.expand, "backbone expand")})
            expanded = {r: self._scale(round(ref_in * r)) for r in ratios}
            # Judged on the width-1.0 table so that the decisions, and arch files, do not
            # depend on width (rounding can make in == out at one width only).
            skippable = row.stride == 1 and ref_in == row.out_channels
            plans.append(_LayerPlan(i, in_ch, out_ch, pair(row.stride), expanded, skippable))
            ref_in = row.out_channels
        return tuple(plans)

    def _make_decisions(self) -> tuple[Categorical, ...]:
        decisions: list[Categorical] = []
        for plan in self._plans:
            i = plan.index
            decisions += [
                Categorical(f"l{i}_kernel", self.kernels),
                Categorical(f"l{i}_expand", tuple(plan.expanded)),
                Categorical(f"l{i}_se", (False, True)),
                Categorical(f"l{i}_act", tuple(ACTIVATION_TOKENS)),
            ]
            if plan.skippable:
                decisions.append(Categorical(f"l{i}_skip", (False, True)))
        return tuple(decisions)

    @property
    def decisions(self) -> Sequence[Categorical]:
        return self._decisions

    @property
    def norm_layer(self) -> partial:
        return partial(nn.BatchNorm2d, eps=self.bn_eps, momentum=self.bn_momentum)

    # ---- arch -> specs ------------------------------------------------------------

    def _checked(self, arch: Arch) -> Arch:
        if not isinstance(arch, Arch):
            raise TypeError(f"expected an Arch, got {type(arch).__name__}")
        if arch.space != self.name:
            raise ValueError(f"arch is for space {arch.space!r}, not {self.name!r}")
        return self.arch(arch.as_dict())

    def _chains(self) -> tuple[tuple[str, str], ...]:
        """Per layer, the names of the channel sets it reads and writes.

        A residual sum ties a block's output to its input, so a stage's blocks share one
        set, named after the layer that starts it (``l{i}_out``; the stem's is
        ``stem_out``). Residuals are judged on the unpruned counts at this width, as the
        standalone block judges them; pruning never changes them (see ``channel_groups``).
        """
        chains, current = [], STEM_CHAIN
        for plan in self._plans:
            residual = plan.stride == (1, 1) and plan.in_channels == plan.out_channels
            out = current if residual else chain_name(plan.index)
            chains.append((current, out))
            current = out
        return tuple(chains)

    def block_specs(self, arch: Arch, widths: Mapping[str, int] | None = None) -> list[BlockSpec | None]:
        """One ``BlockSpec`` per backbone layer, ``None`` where the arch skips it.

        ``widths`` (from NetAdapt pruning; see ``channel_groups`` for the names) overrides
        channel counts: ``l{i}_expanded`` a block's expanded width, ``stem_out`` /
        ``l{i}_out`` the channels of a stage. A block without expand conv works on its
        input's channels, so its expanded width follows the stage.
        """
        choice = self._checked(arch).as_dict()
        widths = self._checked_widths(choice, widths)
        specs: list[BlockSpec | None] = []
        for plan, (chain_in, chain_out) in zip(self._plans, self._chains()):
            i = plan.index
            if choice.get(f"l{i}_skip", False):
                specs.append(None)
                continue
            in_channels = widths.get(chain_in, plan.in_channels)
            expanded = plan.expanded[choice[f"l{i}_expand"]]
            specs.append(
                BlockSpec(
                    in_channels=in_channels,
                    expanded_channels=(
                        in_channels if expanded == plan.in_channels else widths.get(expanded_name(i), expanded)
                    ),
                    out_channels=widths.get(chain_out, plan.out_channels),
                    kernel_size=choice[f"l{i}_kernel"],
                    stride=plan.stride,
                    use_se=choice[f"l{i}_se"],
                    activation=choice[f"l{i}_act"],
                )
            )
        return specs

    def _checked_widths(self, choice: Mapping[str, Any], widths: Mapping[str, int] | None) -> dict[str, int]:
        """``widths`` as a plain dict; ValueError for a name this arch does not have, or a bad count."""
        known = {
            expanded_name(p.index)
            for p in self._plans
            if not choice.get(f"l{p.index}_skip", False) and p.expanded[choice[f"l{p.index}_expand"]] != p.in_channels
        }
        known |= {name for pair_ in self._chains() for name in pair_} | set(HEAD_GROUPS)
        checked: dict[str, int] = {}
        for name, channels in (widths or {}).items():
            if name not in known:
                raise ValueError(f"widths: {name!r} is not a channel count of this arch; known: {sorted(known)}")
            if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
                raise ValueError(f"widths: {name} must be a positive int, got {channels!r}")
            checked[name] = channels
        return checked

    def stem_spec(self, in_channels: int, widths: Mapping[str, int] | None = None) -> StemSpec:
        return StemSpec(
            in_channels=in_channels,
            out_channels=(widths or {}).get(STEM_CHAIN, self._scale(self._table.stem_channels)),
            stride=self.stem_stride,
        )

    def head_spec(self, num_classes: int, widths: Mapping[str, int] | None = None) -> HeadSpec:
        widths = widths or {}
        last = self._plans[-1].out_channels
        hidden = self.head_channels if self.head_channels is not None else self._table.head_channels
        return HeadSpec(
            in_channels=widths.get(self._chains()[-1][1], last),
            conv_channels=widths.get("head_conv", HEAD_EXPANSION * last),
            hidden_channels=widths.get("head_hidden", self._scale(hidden)),
            num_classes=num_classes,
            dropout=self.dropout,
        )

    # ---- the SearchSpace contract ---------------------------------------------------

    def build(
        self,
        arch: Arch,
        *,
        num_classes: int,
        input_shape: InputShape,
        widths: Mapping[str, int] | None = None,
    ) -> MobileNetV3:
        """The standalone network; ``widths`` overrides channel counts (see ``channel_groups``)."""
        channels, _, _ = _check_shape(input_shape, num_classes)
        blocks = [spec for spec in self.block_specs(arch, widths) if spec is not None]
        return MobileNetV3(
            stem=self.stem_spec(channels, widths),
            blocks=blocks,
            head=self.head_spec(num_classes, widths),
            norm_layer=self.norm_layer,
        )

    def supernet(self, *, num_classes: int, input_shape: InputShape) -> "MobileNetV3Supernet":
        _check_shape(input_shape, num_classes)
        return MobileNetV3Supernet(self, num_classes=num_classes, input_shape=input_shape)

    def layers(
        self,
        arch: Arch,
        *,
        num_classes: int,
        input_shape: InputShape,
        widths: Mapping[str, int] | None = None,
    ) -> list[LayerCost]:
        """Units that partition the network: the stem, every present block, the head.

        A skipped layer is an identity and costs nothing, so it has no unit. Each key
        names the unit kind, every field of its spec (the expanded width included, so
        ``widths`` give their own keys) and its input ``CxHxW``.
        """
        channels, height, width = _check_shape(input_shape, num_classes)
        norm = self.norm_layer
        stem = self.stem_spec(channels, widths)
        units = [_unit("stem", stem, (channels, height, width), norm)]
        height, width = _strided(height, stem.stride[0]), _strided(width, stem.stride[1])
        for spec in self.block_specs(arch, widths):
            if spec is None:
                continue
            units.append(_unit("block", spec, (spec.in_channels, height, width), norm))
            height, width = _strided(height, spec.stride[0]), _strided(width, spec.stride[1])
        head = self.head_spec(num_classes, widths)
        units.append(_unit("head", head, (head.in_channels, height, width), norm))
        return units

    def channel_groups(self, arch: Arch, *, widths: Mapping[str, int] | None = None) -> list[ChannelGroup]:
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
        widths = dict(widths or {})
        specs = self.block_specs(arch, widths)
        chains = self._chains()
        stem = self.stem_spec(1, widths)
        head = self.head_spec(1, widths)
        present = [(p, s, c) for p, s, c in zip(self._plans, specs, chains) if s is not None]
        size = {STEM_CHAIN: stem.out_channels}
        for _, spec, (chain_in, chain_out) in present:
            size[chain_in], size[chain_out] = spec.in_channels, spec.out_channels
        writers: dict[str, list[str]] = {STEM_CHAIN: ["stem."]}
        tensors: dict[str, list[tuple[str, int]]] = {STEM_CHAIN: _conv_bn_out("stem.")}
        forbidden: dict[str, set[int]] = {name: set() for name in size}
        groups: list[ChannelGroup] = []
        for j, (plan, spec, (chain_in, chain_out)) in enumerate(present):
            b = f"blocks.{j}."
            if chain_out != chain_in:
                writers[chain_out], tensors[chain_out] = [], []
                if spec.stride == (1, 1):
                    forbidden[chain_in].add(size[chain_out])
                    forbidden[chain_out].add(size[chain_in])
            writers[chain_out].append(f"{b}project.")
            tensors[chain_out] += _conv_bn_out(f"{b}project.")
            expanded = _conv_bn_out(f"{b}depthwise.") + [(f"{b}project.conv.weight", 1)]
            removal = ((f"l{plan.index}_skip", True),) if plan.skippable else ()
            if spec.use_se:
                expanded += [(f"{b}se.fc1.weight", 1), (f"{b}se.fc2.weight", 0), (f"{b}se.fc2.bias", 0)]
                groups.append(
                    ChannelGroup(
                        name=f"l{plan.index}_se_squeeze",
                        channels=make_divisible(spec.expanded_channels // 4, 8),
                        score=(f"{b}se.fc1.weight",),
                        tensors=((f"{b}se.fc1.weight", 0), (f"{b}se.fc1.bias", 0), (f"{b}se.fc2.weight", 1)),
                        prunable=False,
                        removal=removal,
                        module=b,
                    )
                )
            if spec.expanded_channels == spec.in_channels:  # no expand conv: the stage's channels
                tensors[chain_in] += expanded
                continue
            tensors[chain_in].append((f"{b}expand.conv.weight", 1))
            forbidden[chain_in].add(spec.expanded_channels)
            groups.append(
                ChannelGroup(
                    name=expanded_name(plan.index),
                    channels=spec.expanded_channels,
                    score=(f"{b}expand.conv.weight",),
                    tensors=tuple(_conv_bn_out(f"{b}expand.") + expanded),
                    forbidden=(spec.in_channels,),
                    removal=removal,
                    module=b,
                )
            )
        last = chains[-1][1]
        tensors[last].append(("head.conv.conv.weight", 1))
        for name in writers:
            groups.append(
                ChannelGroup(
                    name=name,
                    channels=size[name],
                    score=tuple(f"{w}conv.weight" for w in writers[name]),
                    tensors=tuple(tensors[name]),
                    forbidden=tuple(sorted(forbidden[name])),
                )
            )
        groups.append(
            ChannelGroup(
                name="head_conv",
                channels=head.conv_channels,
                score=("head.conv.conv.weight",),
                tensors=(*_conv_bn_out("head.conv."), ("head.classifier.0.weight", 1)),
            )
        )
        groups.append(
            ChannelGroup(
                name="head_hidden",
                channels=head.hidden_channels,
                score=("head.classifier.0.weight",),
                tensors=(("head.classifier.0.weight", 0), ("head.classifier.0.bias", 0), ("head.classifier.3.weight", 1)),
            )
        )
        return groups

    # ---- presets ------------------------------------------------------------------

    @property
    def presets(self) -> dict[str, Arch]:
        """The torchvision network(s) of this backbone, when ``kernels`` allows them."""
        presets = {}
        for name, backbone in PRESET_BACKBONES.items():
            if backbone == self.backbone and all(r.kernel in self.kernels for r in self._table.layers):
                presets[name] = self._reference_arch()
        return presets

    def preset(self, name: str) -> tuple["MobileNetV3Space", Arch]:
        """``(space, arch)`` of a named preset: the space is this one with the preset's backbone."""
        if name not in PRESET_BACKBONES:
            raise ValueError(
                f"space {self.name!r} has no preset {name!r}; available: {sorted(PRESET_BACKBONES)}"
            )
        space = self
        if PRESET_BACKBONES[name] != self.backbone:
            space = type(self)(**{**self._kwargs(), "backbone": PRESET_BACKBONES[name]})
        if name not in space.presets:
            needed = sorted({r.kernel for r in space._table.layers})
            raise ValueError(
                f"preset {name!r} needs kernels {needed}; search_space.kernels is {list(self.kernels)}"
            )
        return space, space.presets[name]

    def _reference_arch(self) -> Arch:
        values: dict[str, Any] = {}
        for plan, row in zip(self._plans, self._table.layers):
            i = plan.index
            values.update(
                {
                    f"l{i}_kernel": row.kernel,
                    f"l{i}_expand": row.expand,
                    f"l{i}_se": row.se,
                    f"l{i}_act": row.activation,
                }
            )
            if plan.skippable:
                values[f"l{i}_skip"] = False
        return self.arch(values)

    # ---- strings ------------------------------------------------------------------

    def arch_string(self, arch: Arch) -> str:
        """One token per layer joined by ``_``: ``k5e4se-hs`` (kernel 5, expansion 4,
        SE, h-swish), ``k3e3.67-re`` (no SE, ReLU), or ``skip``."""
        choice = self._checked(arch).as_dict()
        tokens = []
        for plan in self._plans:
            i = plan.index
            if choice.get(f"l{i}_skip", False):
                tokens.append("skip")
                continue
            se = "se" if choice[f"l{i}_se"] else ""
            act = ACTIVATION_TOKENS[choice[f"l{i}_act"]]
            tokens.append(f"k{choice[f'l{i}_kernel']}e{choice[f'l{i}_expand']}{se}-{act}")
        return "_".join(tokens)

    def arch_from_string(self, text: str) -> Arch:
        """Parse ``arch_string``'s format; a skipped layer's other choices take their
        first option (they do not change the network)."""
        tokens = text.strip().split("_")
        if len(tokens) != len(self._plans):
            raise ValueError(
                f"arch string {text!r} has {len(tokens)} layers; the {self.backbone} backbone has "
                f"{len(self._plans)}"
            )
        acts = {token: name for name, token in ACTIVATION_TOKENS.items()}
        first = {d.name: d.options[0] for d in self._decisions}
        values: dict[str, Any] = {}
        for plan, token in zip(self._plans, tokens):
            i = plan.index
            if plan.skippable:
                values[f"l{i}_skip"] = token == "skip"
            if token == "skip":
                if not plan.skippable:
                    raise ValueError(f"layer {i} cannot be skipped (token {token!r} in {text!r})")
                values.update({f"l{i}_{k}": first[f"l{i}_{k}"] for k in _BLOCK_CHOICES})
                continue
            match = _TOKEN.fullmatch(token)
            if match is None:
                raise ValueError(f"layer {i}: {token!r} is not like 'k5e4se-hs', 'k3e3-re' or 'skip'")
            values.update(
                {
                    f"l{i}_kernel": int(match["kernel"]),
                    f"l{i}_expand": _number(float(match["expand"]), f"layer {i} expansion"),
                    f"l{i}_se": match["se"] is not None,
                    f"l{i}_act": acts[match["act"]],
                }
            )
        return self.arch(values)


_BLOCK_CHOICES = ("kernel", "expand", "se", "act")
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")
STEM_CHAIN = "stem_out"
HEAD_GROUPS = ("head_conv", "head_hidden")


def _conv_bn_out(prefix: str) -> list[tuple[str, int]]:
    """The output channels of a ``ConvBNAct`` at ``prefix``: its filters and its BN."""
    return [(f"{prefix}conv.weight", 0)] + [(f"{prefix}norm.{t}", 0) for t in _BN_TENSORS]


def chain_name(layer: int) -> str:
    """The ``widths`` key (and channel-group name) of the stage that layer ``layer`` starts."""
    return f"l{layer}_out"


def expanded_name(layer: int) -> str:
    """The ``widths`` key (and channel-group name) of backbone layer ``layer``'s expanded width."""
    return f"l{layer}_expanded"

_TOKEN = re.compile(r"k(?P<kernel>\d+)e(?P<expand>\d+(?:\.\d+)?)(?P<se>se)?-(?P<act>re|hs)")


class MobileNetV3Supernet(Supernet):
    """Every candidate of every layer of a ``MobileNetV3Space``; ``forward(x, arch)``.

    ``[B, C, n_mels, frames] -> [B, num_classes]``. Stem and head are shared by all
    archs; each layer is an ``InvertedResidualChoices`` (see there for the sharing).
    """

    def __init__(
        self, space: MobileNetV3Space, *, num_classes: int, input_shape: InputShape
    ) -> None:
        super().__init__()
        channels, _, _ = _check_shape(input_shape, num_classes)
        self.space = space
        norm = space.norm_layer
        self.stem = space.stem_spec(channels).build(norm)
        self.layers = nn.ModuleList(
            InvertedResidualChoices(
                in_channels=plan.in_channels,
                out_channels=plan.out_channels,
                stride=plan.stride,
                expanded_options=list(plan.expanded.values()),
                kernel_sizes=space.kernels,
                norm_layer=norm,
            )
            for plan in space._plans
        )
        self.head = space.head_spec(num_classes).build(norm)
        kaiming_init_(self)

    def forward(self, x: Tensor, arch: Arch) -> Tensor:  # type: ignore[override]
        x = self.stem(x)
        for layer, spec in zip(self.layers, self.space.block_specs(arch)):
            if spec is not None:
                x = layer(x, spec)
        return self.head(x)

    def subnet_state_dict(self, arch: Arch) -> dict[str, Tensor]:
        """The chosen path's weights under ``space.build(arch)``'s names, as fresh tensors
        (slices of the shared weights are copied, so saving them stores only the path)."""
        state = {f"stem.{k}": v.clone() for k, v in self.stem.state_dict().items()}
        specs = self.space.block_specs(arch)
        present = [(layer, spec) for layer, spec in zip(self.layers, specs) if spec is not None]
        for j, (layer, spec) in enumerate(present):
            state.update({f"blocks.{j}.{k}": v for k, v in layer.block_state_dict(spec).items()})
        state.update({f"head.{k}": v.clone() for k, v in self.head.state_dict().items()})
        return state


def _check_shape(input_shape: Sequence[int], num_classes: int) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(
            f"input_shape must be (channels, n_mels, frames), positive ints; got {input_shape!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return shape  # type: ignore[return-value]


def _strided(size: int, stride: int) -> int:
    """Output length of an odd-kernel, same-padded conv."""
    return (size - 1) // stride + 1


def _unit(
    kind: str, spec: StemSpec | BlockSpec | HeadSpec, shape: tuple[int, int, int], norm: partial
) -> LayerCost:
    """A latency-table unit whose key names ``kind``, every spec field and the input CxHxW."""
    fields = ",".join(f"{k}={_key_value(v)}" for k, v in asdict(spec).items())
    key = f"mobilenetv3.{kind}({fields},input={'x'.join(map(str, shape))})"

    def build() -> nn.Module:
        return kaiming_init_(spec.build(norm))

    return LayerCost(key=key, input_shape=shape, build=build)


def _key_value(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)
