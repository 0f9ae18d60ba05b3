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
from dataclasses import dataclass
from functools import partial
from typing import Any, Mapping, Sequence

from torch import nn

from child_models.mobilenet import BlockSpec, HeadSpec, MobileNetV3, StemSpec
from child_models.mobilenet_supernet import LayerSlot, MobileNetV3Supernet
from child_models.ops import make_divisible, pair
from search_spaces.base import Arch, InputShape, LayerCost, check_build_args
from search_spaces.channels import ChannelGroup, Pick, PrunableSpace, checked_widths
from search_spaces.layered import LayeredSpace, Options
from search_spaces.mobilenetv3_views import (
    HEAD_GROUPS,
    STEM_CHAIN,
    block,
    chain_name,
    derive_channel_groups,
    expanded_name,
    derive_units,
)
from search_spaces.mobilenetv3_backbones import BACKBONES, PRESET_BACKBONES

ACTIVATION_TOKENS = {"relu": "re", "hswish": "hs"}
HEAD_EXPANSION = 6  # torchvision: last conv = 6 x the last block's output channels


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


class MobileNetV3Space(LayeredSpace, PrunableSpace):
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
    token_separator = "_"
    options_by_size = True  # kernels and ratios ascending, SE False/True; skip runs the other way:
    shrinking_keys = ("skip",)
    unsized_keys = ("act",)  # relu or hard-swish: no weights, no size

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
            raise ValueError(f"search_space.bn_momentum must be in (0, 1] and bn_eps > 0, got {bn_momentum}, {bn_eps}")
        self.head_channels = head_channels
        self.dropout = float(dropout)
        self.bn_momentum = float(bn_momentum)
        self.bn_eps = float(bn_eps)
        self._table = BACKBONES[backbone]
        self._plans = self._plan_layers()

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

    def layer_choices(self) -> tuple[dict[str, Options], ...]:
        """Per backbone layer: kernel, expansion, SE, activation, and skip where valid."""
        rows = []
        for plan in self._plans:
            row: dict[str, Options] = {
                "kernel": self.kernels,
                "expand": tuple(plan.expanded),
                "se": (False, True),
                "act": tuple(ACTIVATION_TOKENS),
            }
            if plan.skippable:
                row["skip"] = (False, True)
            rows.append(row)
        return tuple(rows)

    @property
    def norm_layer(self) -> partial:
        return partial(nn.BatchNorm2d, eps=self.bn_eps, momentum=self.bn_momentum)

    # ---- arch -> specs ------------------------------------------------------------

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
        layers = self.layer_values(arch)
        widths = self._checked_widths(layers, widths)
        specs: list[BlockSpec | None] = []
        for plan, row, (chain_in, chain_out) in zip(self._plans, layers, self._chains()):
            if row.get("skip", False):
                specs.append(None)
                continue
            in_channels = widths.get(chain_in, plan.in_channels)
            expanded = plan.expanded[row["expand"]]
            specs.append(
                BlockSpec(
                    in_channels=in_channels,
                    expanded_channels=(
                        in_channels if expanded == plan.in_channels else widths.get(expanded_name(plan.index), expanded)
                    ),
                    out_channels=widths.get(chain_out, plan.out_channels),
                    kernel_size=row["kernel"],
                    stride=plan.stride,
                    use_se=row["se"],
                    activation=row["act"],
                )
            )
        return specs

    def _checked_widths(self, layers: list[dict[str, Any]], widths: Mapping[str, int] | None) -> dict[str, int]:
        """``widths`` as a plain dict; ValueError for a name this arch does not have, or a bad count."""
        known = {
            expanded_name(p.index)
            for p, row in zip(self._plans, layers)
            if not row.get("skip", False) and p.expanded[row["expand"]] != p.in_channels
        }
        known |= {name for pair_ in self._chains() for name in pair_} | set(HEAD_GROUPS)
        return checked_widths(widths, known, "a channel count of this arch")

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
        channels, _, _ = check_build_args(num_classes, input_shape)
        blocks = [spec for spec in self.block_specs(arch, widths) if spec is not None]
        return MobileNetV3(
            stem=self.stem_spec(channels, widths),
            blocks=blocks,
            head=self.head_spec(num_classes, widths),
            norm_layer=self.norm_layer,
        )

    def supernet(self, *, num_classes: int, input_shape: InputShape) -> MobileNetV3Supernet:
        channels, _, _ = check_build_args(num_classes, input_shape)
        slots = [LayerSlot(p.in_channels, p.out_channels, p.stride, tuple(p.expanded.values())) for p in self._plans]
        return MobileNetV3Supernet(
            stem=self.stem_spec(channels),
            layers=slots,
            kernel_sizes=self.kernels,
            head=self.head_spec(num_classes),
            norm_layer=self.norm_layer,
            decode=self.block_specs,
        )

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
        channels, height, width = check_build_args(num_classes, input_shape)
        return derive_units(
            stem=self.stem_spec(channels, widths),
            blocks=[spec for spec in self.block_specs(arch, widths) if spec is not None],
            head=self.head_spec(num_classes, widths),
            input_shape=(channels, height, width),
            norm=self.norm_layer,
        )

    def channel_groups(self, arch: Arch, *, widths: Mapping[str, int] | None = None) -> list[ChannelGroup]:
        """The channels NetAdapt may prune (``stem_out``, ``l{i}_out``, ``l{i}_expanded``,
        ``head_conv``, ``head_hidden``), derived from the block specs: see
        ``search_spaces.mobilenetv3_views.derive_channel_groups``."""
        widths = dict(widths or {})
        specs = self.block_specs(arch, widths)
        return derive_channel_groups(
            layers=[(p.index, p.skippable, spec, chain) for p, spec, chain in zip(self._plans, specs, self._chains())],
            stem=self.stem_spec(1, widths),
            head=self.head_spec(1, widths),
        )

    def parts(self, arch: Arch) -> dict[str, Pick]:
        """``stem``, ``l{i}`` per present backbone layer, ``head``: what survives a removal."""
        parts: dict[str, Pick] = {"stem": lambda net: net.stem, "head": lambda net: net.head}
        present = [p.index for p, spec in zip(self._plans, self.block_specs(arch)) if spec is not None]
        parts.update({f"l{i}": partial(block, j) for j, i in enumerate(present)})
        return parts

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
            raise ValueError(f"space {self.name!r} has no preset {name!r}; available: {sorted(PRESET_BACKBONES)}")
        space = self
        if PRESET_BACKBONES[name] != self.backbone:
            space = type(self)(**{**self._kwargs(), "backbone": PRESET_BACKBONES[name]})
        if name not in space.presets:
            needed = sorted({r.kernel for r in space._table.layers})
            raise ValueError(f"preset {name!r} needs kernels {needed}; search_space.kernels is {list(self.kernels)}")
        return space, space.presets[name]

    def _reference_arch(self) -> Arch:
        rows = [{"kernel": r.kernel, "expand": r.expand, "se": r.se, "act": r.activation} for r in self._table.layers]
        return self.arch_from_layers([{**row, "skip": False} if p.skippable else row for row, p in zip(rows, self._plans)])

    # ---- strings (one token per layer, joined by "_") ------------------------------

    def format_layer(self, layer: int, values: Mapping[str, Any]) -> str:
        """``k5e4se-hs`` (kernel 5, expansion 4, SE, h-swish), ``k3e3.67-re`` (no SE,
        ReLU), or ``skip``."""
        if values.get("skip", False):
            return "skip"
        se = "se" if values["se"] else ""
        return f"k{values['kernel']}e{values['expand']}{se}-{ACTIVATION_TOKENS[values['act']]}"

    def parse_layer(self, layer: int, token: str) -> dict[str, Any]:
        """A skipped layer's other choices take their first option (they do not change the network)."""
        skippable = self._plans[layer].skippable
        if token == "skip":
            if not skippable:
                raise ValueError(f"layer {layer} cannot be skipped (token {token!r})")
            return {key: options[0] for key, options in self.layer_choices()[layer].items() if key != "skip"} | {"skip": True}
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise ValueError(f"layer {layer}: {token!r} is not like 'k5e4se-hs', 'k3e3-re' or 'skip'")
        acts = {tok: name for name, tok in ACTIVATION_TOKENS.items()}
        values: dict[str, Any] = {
            "kernel": int(match["kernel"]),
            "expand": _number(float(match["expand"]), f"layer {layer} expansion"),
            "se": match["se"] is not None,
            "act": acts[match["act"]],
        }
        return {**values, "skip": False} if skippable else values


_TOKEN = re.compile(r"k(?P<kernel>\d+)e(?P<expand>\d+(?:\.\d+)?)(?P<se>se)?-(?P<act>re|hs)")
