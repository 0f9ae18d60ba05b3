"""The ENAS macro search space (Pham et al. 2018), for log-mel input.

``num_layers`` (L) layers of ``filters`` (F) channels. Decisions, in the order the
ENAS controller samples them:

- ``l{i}_op`` (every layer): one of ``conv3x3, sep3x3, conv5x5, sep5x5, avgpool3x3,
  maxpool3x3`` (the original branch order).
- ``l{i}_skip`` (layers ``i >= 1``): any subset of positions ``0 .. i-1`` summed into
  the layer's output before its BN. Position 0 is the stem, position ``j + 1`` layer
  ``j``'s output; layer ``i``'s own input (position ``i``) is always read, so it is not
  a choice. This is the original code's indexing.

Pooling by factorized reduction of every live position follows layers ``L//3 - 1`` and
``2*(L//3) - 1``. The stem is a ``stem_kernel`` conv with stride ``stem_stride``
(frequency, time) + BN: an early downsample that makes a CPU search affordable (see
``conf/search_space/enas_macro.yaml``); ``stem_stride=1`` is the original.

Compact string (``arch_string`` / ``parse_arch_string``): one token per layer joined by
``|``, an op code (``c3 s3 c5 s5 ap mp``) then ``<`` and the skip positions, e.g.
``c3|s5<0|mp|c5<0,2``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from child_models.enas import (
    EnasChild,
    EnasConfig,
    EnasHead,
    EnasPlan,
    EnasSupernet,
    make_stem,
    reductions_needed,
)
from child_models.enas_ops import BRANCH_OPS, CONV_BRANCHES, FactorizedReduction, SkipSum, make_branch
from search_spaces.base import Arch, InputShape, LayerCost, check_build_args
from search_spaces.channels import ChannelGroup, PrunableSpace, checked_widths
from search_spaces.layered import LayeredSpace, Options

OP_CODES: dict[str, str] = {
    "conv3x3": "c3",
    "sep3x3": "s3",
    "conv5x5": "c5",
    "sep5x5": "s5",
    "avgpool3x3": "ap",
    "maxpool3x3": "mp",
}
_OPS_BY_CODE = {code: op for op, code in OP_CODES.items()}


def op_name(layer: int) -> str:
    return f"l{layer}_op"


def skip_name(layer: int) -> str:
    return f"l{layer}_skip"


def inner_name(layer: int) -> str:
    """The ``widths`` key (and channel-group name) of layer ``layer``'s inner branch width."""
    return f"l{layer}_inner"


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"enas_macro: {what} must be a positive int or [freq, time], got {value!r}")
    return pair  # type: ignore[return-value]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class EnasMacroSpace(LayeredSpace, PrunableSpace):
    """The ENAS general child as a search space (see the module docstring)."""

    name = "enas_macro"

    def __init__(
        self,
        *,
        num_layers: int = 12,
        filters: int = 36,
        keep_prob: float = 0.9,
        stem_kernel: int = 3,
        stem_stride: int | Sequence[int] = 1,
    ) -> None:
        self.config = EnasConfig(
            num_layers=int(num_layers),
            filters=int(filters),
            stem_kernel=int(stem_kernel),
            stem_stride=_pair(stem_stride, "stem_stride"),
            keep_prob=float(keep_prob),
        )

    def layer_choices(self) -> tuple[dict[str, Options], ...]:
        """Per layer its branch op and (from layer 1 on) its skip inputs."""
        return tuple({"op": tuple(BRANCH_OPS), **({"skip": i} if i > 0 else {})} for i in range(self.config.num_layers))

    # ---- arch <-> plan ----------------------------------------------------------------

    def plan(self, arch: Arch) -> EnasPlan:
        """The ops and skip positions ``arch`` chooses; ValueError if it is not of this space."""
        names = tuple(d.name for d in self.decisions)
        if arch.space != self.name or arch.names != names:
            raise ValueError(
                f"arch of space {arch.space!r} with {len(arch.names)} decisions does not fit "
                f"{self.name!r} with {self.config.num_layers} layers ({len(names)} decisions)"
            )
        layers = range(self.config.num_layers)
        return EnasPlan(
            ops=tuple(str(arch[op_name(i)]) for i in layers),
            skips=tuple(tuple(arch[skip_name(i)]) if i > 0 else () for i in layers),  # type: ignore[arg-type]
        )

    def arch_from_plan(self, plan: EnasPlan) -> Arch:
        values: dict[str, object] = {}
        for i, (op, skip) in enumerate(zip(plan.ops, plan.skips)):
            values[op_name(i)] = op
            if i > 0:
                values[skip_name(i)] = skip
        return self.arch(values)  # type: ignore[arg-type]

    def format_layer(self, layer: int, values: Mapping[str, object]) -> str:
        skip = values.get("skip", ())
        return OP_CODES[str(values["op"])] + ("<" + ",".join(map(str, skip)) if skip else "")  # type: ignore[arg-type]

    def parse_layer(self, layer: int, token: str) -> dict[str, object]:
        code, _, skip_text = token.partition("<")
        if code not in _OPS_BY_CODE:
            raise ValueError(f"arch string layer {layer}: unknown op code {code!r}; use one of {list(_OPS_BY_CODE)}")
        try:
            skip = tuple(int(v) for v in skip_text.split(",")) if skip_text else ()
        except ValueError:
            raise ValueError(f"arch string layer {layer}: bad skip list {skip_text!r}") from None
        if layer == 0:
            if skip:
                raise ValueError("arch string layer 0 cannot have skip inputs")
            return {"op": _OPS_BY_CODE[code]}
        return {"op": _OPS_BY_CODE[code], "skip": skip}

    def parse_arch_string(self, text: str) -> Arch:
        """Inverse of ``arch_string`` (``arch_from_string``, kept under its older name)."""
        return self.arch_from_string(text)

    @property
    def presets(self) -> dict[str, Arch]:
        """Hand-made references: plain stacks of one op, no skips."""
        n = self.config.num_layers
        return {
            f"plain_{op}": self.arch_from_plan(EnasPlan(ops=(op,) * n, skips=((),) * n))
            for op in ("conv3x3", "sep3x3")
        }

    # ---- models ----------------------------------------------------------------------

    def supernet(self, *, num_classes: int, input_shape: InputShape) -> EnasSupernet:
        channels, _, _ = check_build_args(num_classes, input_shape)
        return EnasSupernet(config=self.config, decode=self.plan, in_channels=channels, num_classes=num_classes)

    def inner_widths(self, plan: EnasPlan, widths: Mapping[str, int] | None) -> dict[int, int]:
        """``{"l{i}_inner": channels}`` -> ``{i: channels}``, checked: only conv branches
        have an inner width apart from their output."""
        names = {inner_name(i): i for i, op in enumerate(plan.ops) if op in CONV_BRANCHES}
        checked = checked_widths(widths, set(names), "an inner width of this arch's conv branches")
        inner = {names[name]: channels for name, channels in checked.items()}
        return inner

    def build(
        self,
        arch: Arch,
        *,
        num_classes: int,
        input_shape: InputShape,
        widths: Mapping[str, int] | None = None,
    ) -> EnasChild:
        """The standalone child; ``widths`` (``{"l{i}_inner": channels}``) narrows conv branches."""
        channels, _, _ = check_build_args(num_classes, input_shape)
        plan = self.plan(arch)
        return EnasChild(
            config=self.config,
            plan=plan,
            in_channels=channels,
            num_classes=num_classes,
            inner_widths=self.inner_widths(plan, widths),
        )

    def channel_groups(self, arch: Arch, *, widths: Mapping[str, int] | None = None) -> list[ChannelGroup]:
        """The inner width of every conv branch (after its 1x1 conv), under ``build``'s names.

        Layer outputs are tied by the skip sums (and pool branches' outputs are their
        inner width), so they are not offered.
        """
        plan = self.plan(arch)
        inner = self.inner_widths(plan, widths)
        groups = []
        for i, op in enumerate(plan.ops):
            if op not in CONV_BRANCHES:
                continue
            writers = tuple(lambda net, i=i, k=k: net.branches[i].inner_channels()[0][k] for k in range(2 + CONV_BRANCHES[op][1]))
            groups.append(
                ChannelGroup(
                    name=inner_name(i),
                    channels=inner.get(i, self.config.filters),
                    score=writers[:1],
                    writers=writers,
                    readers=(lambda net, i=i: net.branches[i].inner_channels()[1][0],),
                )
            )
        return groups

    def layers(
        self,
        arch: Arch,
        *,
        num_classes: int,
        input_shape: InputShape,
        widths: Mapping[str, int] | None = None,
    ) -> list[LayerCost]:
        """Stem, per layer its branch op and skip-sum+BN, the needed reductions, the head.

        Every parameter of ``build(arch)`` belongs to exactly one unit. A branch narrowed
        by ``widths`` has ``,inner=<channels>`` appended to its key.
        """
        channels, height, width = check_build_args(num_classes, input_shape)
        cfg, plan, f = self.config, self.plan(arch), self.config.filters
        inner = self.inner_widths(plan, widths)
        sf, st = cfg.stem_stride
        units = [
            LayerCost(
                key=f"enas.stem:cin={channels},cout={f},k={cfg.stem_kernel},s={sf}x{st},hw={height}x{width}",
                input_shape=(channels, height, width),
                build=lambda: make_stem(cfg, in_channels=channels),
            )
        ]
        h, w = _ceil_div(height, sf), _ceil_div(width, st)
        needed = reductions_needed(plan, cfg.pool_layers)
        for i, (op, skip) in enumerate(zip(plan.ops, plan.skips)):
            narrowed = f",inner={inner[i]}" if inner.get(i, f) != f else ""
            units.append(
                LayerCost(
                    key=f"enas.branch:op={op},cin={f},cout={f},hw={h}x{w}{narrowed}",
                    input_shape=(f, h, w),
                    build=lambda op=op, c=inner.get(i): make_branch(op, in_channels=f, out_channels=f, inner_channels=c),
                )
            )
            if i > 0:
                units.append(
                    LayerCost(
                        key=f"enas.skip_sum_bn:c={f},inputs={len(skip) + 1},hw={h}x{w}",
                        input_shape=(f, h, w),
                        build=lambda: SkipSum(channels=f),
                        num_inputs=len(skip) + 1,
                    )
                )
            if i in cfg.pool_layers:
                for _ in range(sum(p == i for p, _ in needed)):
                    units.append(
                        LayerCost(
                            key=f"enas.factorized_reduction:cin={f},cout={f},hw={h}x{w}",
                            input_shape=(f, h, w),
                            build=lambda: FactorizedReduction(in_channels=f, out_channels=f),
                        )
                    )
                h, w = _ceil_div(h, 2), _ceil_div(w, 2)
        units.append(
            LayerCost(
                key=f"enas.head:cin={f},classes={num_classes},hw={h}x{w}",
                input_shape=(f, h, w),
                build=lambda: EnasHead(channels=f, num_classes=num_classes, keep_prob=cfg.keep_prob),
            )
        )
        return units
