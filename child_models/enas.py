"""The ENAS macro child network: a standalone build and the weight-shared supernet.

The network (Pham et al. 2018, ``general_child.py``, search mode) keeps a list of
feature maps, its *positions*: position 0 is the stem output, position ``j + 1`` the
output of layer ``j``. Layer ``i`` reads position ``i`` (the previous layer), runs its
branch op, and (for ``i >= 1``) adds the positions it chose as skip inputs (any of
``0 .. i-1``: the stem and the layers before its direct input), then applies BN::

    out_0 = branch_0(pos[0])
    out_i = BN_i(pos[s_1] + ... + pos[s_k] + branch_i(pos[i]))     for i >= 1

After each pooling layer ``p`` (``L//3 - 1`` and ``2*(L//3) - 1``, as in the original)
every position is replaced by its factorized reduction (H and W halved; the filter
count stays, as in the original's search mode). Only positions that a later layer or
the head still reads are reduced: the original also reduces the others, whose
results nothing reads; neither the standalone model nor the supernet computes them. The head is global average pooling, dropout
and a linear classifier.

Both models run the same routine (``_run``) and differ only in where they find each
module, so a supernet path and the standalone build compute exactly the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping

from torch import Tensor, nn

from child_models.enas_ops import BRANCH_OPS, FactorizedReduction, SkipSum, make_branch
from child_models.init import kaiming_init_
from child_models.supernet import Supernet


@dataclass(frozen=True)
class EnasPlan:
    """A decoded ENAS macro arch.

    ``ops[i]`` names layer ``i``'s branch op (a key of ``BRANCH_OPS``); ``skips[i]`` are
    the positions (0 = stem, ``j + 1`` = layer ``j``) summed into layer ``i``'s output,
    a sorted subset of ``range(i)``; ``skips[0]`` is always empty.
    """

    ops: tuple[str, ...]
    skips: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if not self.ops:
            raise ValueError("an ENAS plan needs at least one layer")
        if len(self.skips) != len(self.ops):
            raise ValueError(f"{len(self.ops)} ops but {len(self.skips)} skip lists")
        for i, (op, skip) in enumerate(zip(self.ops, self.skips)):
            if op not in BRANCH_OPS:
                raise ValueError(f"layer {i}: unknown op {op!r}; choose one of {list(BRANCH_OPS)}")
            if tuple(sorted(set(skip))) != tuple(skip) or any(not 0 <= j < i for j in skip):
                raise ValueError(f"layer {i}: skips {list(skip)} must be sorted distinct positions in [0, {i})")

    @property
    def num_layers(self) -> int:
        return len(self.ops)


@dataclass(frozen=True)
class EnasConfig:
    """The shape of an ENAS macro network apart from its plan, input and classes."""

    num_layers: int
    filters: int
    stem_kernel: int = 3
    stem_stride: tuple[int, int] = (1, 1)  # (frequency, time)
    keep_prob: float = 0.9

    def __post_init__(self) -> None:
        for name in ("num_layers", "filters", "stem_kernel"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.stem_kernel % 2 != 1:
            raise ValueError(f"stem_kernel must be odd, got {self.stem_kernel}")
        if len(self.stem_stride) != 2 or min(self.stem_stride) < 1:
            raise ValueError(f"stem_stride must be two positive ints (freq, time), got {self.stem_stride}")
        if not 0.0 < self.keep_prob <= 1.0:
            raise ValueError(f"keep_prob must be in (0, 1], got {self.keep_prob}")
        if self.pool_layers and self.filters % 2 != 0:
            raise ValueError(f"filters must be even (factorized reduction halves it), got {self.filters}")

    @property
    def pool_layers(self) -> tuple[int, ...]:
        """Layers after which every live position is reduced (none when L < 3)."""
        return pool_layers(self.num_layers)


def pool_layers(num_layers: int) -> tuple[int, ...]:
    """``(L//3 - 1, 2*(L//3) - 1)`` as in the original; empty when ``L < 3``."""
    distance = num_layers // 3
    return (distance - 1, 2 * distance - 1) if distance >= 1 else ()


@lru_cache(maxsize=4096)
def reductions_needed(plan: EnasPlan, pools: tuple[int, ...]) -> frozenset[tuple[int, int]]:
    """The ``(pool_layer, position)`` pairs whose reduction some later consumer reads.

    Position ``j`` is read by layer ``j`` (as its input; by the head when ``j == L``)
    and by every layer that chose it as a skip input; it must be reduced at pool ``p``
    when one of those readers comes after ``p``.
    """
    last_reader = list(range(plan.num_layers + 1))
    for i, skip in enumerate(plan.skips):
        for j in skip:
            last_reader[j] = max(last_reader[j], i)
    return frozenset((p, j) for p in pools for j in range(p + 2) if last_reader[j] > p)


def reduction_key(pool_layer: int, position: int) -> str:
    return f"pool{pool_layer}_from{position}"


def make_stem(config: EnasConfig, *, in_channels: int) -> nn.Sequential:
    """Conv (kernel ``stem_kernel``, stride ``stem_stride``) + BN, no ReLU (as the original).

    ``[B, in_channels, H, W] -> [B, filters, ceil(H / stride_f), ceil(W / stride_t)]``.
    """
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            config.filters,
            config.stem_kernel,
            stride=config.stem_stride,
            padding=config.stem_kernel // 2,
            bias=False,
        ),
        nn.BatchNorm2d(config.filters),
    )


class EnasHead(nn.Module):
    """Global average pooling, dropout, linear: ``[B, C, H, W] -> [B, num_classes]``."""

    def __init__(self, *, channels: int, num_classes: int, keep_prob: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=1.0 - keep_prob)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(x.mean(dim=(2, 3))))


def _run(
    x: Tensor,
    plan: EnasPlan,
    config: EnasConfig,
    *,
    stem: nn.Module,
    branch: Callable[[int], nn.Module],
    skip_sums: nn.ModuleDict,
    reductions: nn.ModuleDict,
    head: nn.Module,
) -> Tensor:
    """The forward pass of ``plan``; ``branch(i)`` is layer ``i``'s op module."""
    needed = reductions_needed(plan, config.pool_layers)
    positions: list[Tensor | None] = [stem(x)]  # each [B, F, H, W]
    for i in range(plan.num_layers):
        out = branch(i)(positions[i])
        if i > 0:
            out = skip_sums[str(i)](*(positions[j] for j in plan.skips[i]), out)
        positions.append(out)
        if i in config.pool_layers:  # [B, F, H, W] -> [B, F, ceil(H/2), ceil(W/2)]
            positions = [
                reductions[reduction_key(i, j)](pos) if (i, j) in needed else None
                for j, pos in enumerate(positions)
            ]
    return head(positions[-1])


class EnasChild(nn.Module):
    """A standalone ENAS macro network holding only the ops, BNs and reductions of ``plan``.

    ``inner_widths`` (``{layer: channels}``, from NetAdapt pruning) narrows conv branches
    between their 1x1 and kxk convs; layer outputs keep ``config.filters`` channels.
    ``forward(x)``: ``[B, in_channels, H, W] -> [B, num_classes]`` logits (any H, W).
    """

    def __init__(
        self,
        *,
        config: EnasConfig,
        plan: EnasPlan,
        in_channels: int,
        num_classes: int,
        inner_widths: Mapping[int, int] | None = None,
    ) -> None:
        super().__init__()
        if plan.num_layers != config.num_layers:
            raise ValueError(f"plan has {plan.num_layers} layers, config {config.num_layers}")
        self.config = config
        self.plan = plan
        f = config.filters
        inner = dict(inner_widths or {})
        self.stem = make_stem(config, in_channels=in_channels)
        self.branches = nn.ModuleList(
            make_branch(op, in_channels=f, out_channels=f, inner_channels=inner.get(i)) for i, op in enumerate(plan.ops)
        )
        self.skip_sums = nn.ModuleDict({str(i): SkipSum(channels=f) for i in range(1, config.num_layers)})
        self.reductions = nn.ModuleDict(
            {
                reduction_key(p, j): FactorizedReduction(in_channels=f, out_channels=f)
                for p, j in sorted(reductions_needed(plan, config.pool_layers))
            }
        )
        self.head = EnasHead(channels=f, num_classes=num_classes, keep_prob=config.keep_prob)
        kaiming_init_(self, conv_mode="fan_in")  # TF he_normal, as the original

    def forward(self, x: Tensor) -> Tensor:
        return _run(
            x,
            self.plan,
            self.config,
            stem=self.stem,
            branch=self.branches.__getitem__,
            skip_sums=self.skip_sums,
            reductions=self.reductions,
            head=self.head,
        )


class EnasSupernet(Supernet):
    """Every (layer, op) with its own weights; ``forward(x, arch)`` runs only arch's path.

    Skip BNs are one per layer and reductions one per ``(pool layer, position)``, shared by
    every arch (as in the original). ``decode`` turns an ``Arch`` of the owning space into
    an ``EnasPlan``. Parameter names match ``EnasChild`` except that ``branches.{i}`` is a
    dict over ops here: ``branches.{i}.{op}.*`` maps to ``branches.{i}.*`` there.
    """

    def __init__(
        self, *, config: EnasConfig, decode: Callable[[Any], EnasPlan], in_channels: int, num_classes: int
    ) -> None:
        super().__init__()
        self.config = config
        self._decode = decode
        f = config.filters
        self.stem = make_stem(config, in_channels=in_channels)
        self.branches = nn.ModuleList(
            nn.ModuleDict({op: make_branch(op, in_channels=f, out_channels=f) for op in BRANCH_OPS})
            for _ in range(config.num_layers)
        )
        self.skip_sums = nn.ModuleDict({str(i): SkipSum(channels=f) for i in range(1, config.num_layers)})
        self.reductions = nn.ModuleDict(
            {
                reduction_key(p, j): FactorizedReduction(in_channels=f, out_channels=f)
                for p in config.pool_layers
                for j in range(p + 2)
            }
        )
        self.head = EnasHead(channels=f, num_classes=num_classes, keep_prob=config.keep_prob)
        kaiming_init_(self, conv_mode="fan_in")  # TF he_normal, as the original

    def forward(self, x: Tensor, arch: Any) -> Tensor:  # type: ignore[override]
        """``[B, in_channels, H, W] -> [B, num_classes]`` through ``arch``'s path only."""
        plan = self._decode(arch)
        return _run(
            x,
            plan,
            self.config,
            stem=self.stem,
            branch=lambda i: self.branches[i][plan.ops[i]],
            skip_sums=self.skip_sums,
            reductions=self.reductions,
            head=self.head,
        )

    def subnet_state_dict(self, arch: Any) -> dict[str, Tensor]:
        """Copies of ``arch``'s weights and BN buffers under ``EnasChild``'s names."""
        plan = self._decode(arch)
        parts: dict[str, nn.Module] = {"stem": self.stem, "head": self.head}
        for i, op in enumerate(plan.ops):
            parts[f"branches.{i}"] = self.branches[i][op]
        for key, module in self.skip_sums.items():
            parts[f"skip_sums.{key}"] = module
        for p, j in reductions_needed(plan, self.config.pool_layers):
            parts[f"reductions.{reduction_key(p, j)}"] = self.reductions[reduction_key(p, j)]
        return {
            f"{prefix}.{name}": tensor.detach().clone()
            for prefix, module in parts.items()
            for name, tensor in module.state_dict().items()
        }
