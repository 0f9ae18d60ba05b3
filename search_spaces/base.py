"""The search-space contract: decisions, architectures, and what a space must provide.

A controller sees only ``SearchSpace.decisions``: an ordered list of ``Categorical``
choices and ``InputChoice`` skip-connection choices. It proposes one value per
decision; the space turns that tuple into an ``Arch`` and knows how to build it.

Values, not indices, are stored in an ``Arch`` so that arch files stay readable:
a ``Categorical`` value is one of its ``options``; an ``InputChoice`` value is a
sorted tuple of the chosen earlier-layer indices (any subset of
``range(num_inputs)``).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np
from torch import nn

from child_models.supernet import Supernet  # re-exported: the supernet base lives with the modules

JsonScalar = Union[int, float, str, bool, None]
InputShape = tuple[int, int, int]  # (channels, n_mels, frames)


@dataclass(frozen=True)
class Categorical:
    """Pick exactly one of ``options``."""

    name: str
    options: tuple[JsonScalar, ...]

    def __post_init__(self) -> None:
        if len(self.options) < 1:
            raise ValueError(f"decision {self.name!r} has no options")
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"decision {self.name!r} has repeated options {self.options}")

    @property
    def size(self) -> int:
        return len(self.options)

    def validate(self, value: Any) -> JsonScalar:
        if value not in self.options:
            raise ValueError(f"{self.name}={value!r} is not one of {list(self.options)}")
        # JSON turns tuples into lists and keeps ints as ints; return the canonical option.
        return self.options[self.options.index(value)]


@dataclass(frozen=True)
class InputChoice:
    """Pick any subset of the ``num_inputs`` earlier layers (ENAS skip connections)."""

    name: str
    num_inputs: int

    def validate(self, value: Any) -> tuple[int, ...]:
        chosen = tuple(sorted(int(v) for v in value))
        if len(set(chosen)) != len(chosen) or any(not 0 <= v < self.num_inputs for v in chosen):
            raise ValueError(
                f"{self.name}={list(value)!r} must be distinct indices in [0, {self.num_inputs})"
            )
        return chosen


Decision = Union[Categorical, InputChoice]
ArchValue = Union[JsonScalar, tuple[int, ...]]


@dataclass(frozen=True)
class Arch:
    """One value per decision of a space, in the space's decision order."""

    space: str
    names: tuple[str, ...]
    values: tuple[ArchValue, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.values):
            raise ValueError("an Arch needs exactly one value per decision name")

    def __getitem__(self, name: str) -> ArchValue:
        try:
            return self.values[self.names.index(name)]
        except ValueError:
            raise KeyError(f"arch of space {self.space!r} has no decision {name!r}") from None

    def as_dict(self) -> dict[str, ArchValue]:
        return dict(zip(self.names, self.values))

    def to_json_dict(self) -> dict[str, Any]:
        choices = {n: list(v) if isinstance(v, tuple) else v for n, v in zip(self.names, self.values)}
        return {"space": self.space, "choices": choices}

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), sort_keys=False)

    @property
    def hash(self) -> str:
        """Stable 12-hex-digit id: the same choices give the same hash in every process."""
        return arch_hash(self.to_json_dict())


def arch_hash(data: Mapping[str, Any]) -> str:
    """``Arch.hash`` from an arch's JSON (``{"space": ..., "choices": {...}}``) alone."""
    canonical = json.dumps({"space": data["space"], "choices": data["choices"]}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode()).hexdigest()[:12]


def arch_from_json_dict(data: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split a JSON arch (``{"space": ..., "choices": {...}}``) into space name and choices."""
    if "space" not in data or "choices" not in data:
        raise ValueError('an arch JSON needs the keys "space" and "choices"')
    return str(data["space"]), dict(data["choices"])


def check_build_args(num_classes: int, input_shape: Sequence[int]) -> InputShape:
    """``input_shape`` as ``(channels, n_mels, frames)``; ValueError for anything but positive ints."""
    shape = tuple(input_shape)
    if len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"input_shape must be (channels, n_mels, frames), positive ints; got {input_shape!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class LayerCost:
    """One unit of a built network, as the latency table sees it.

    ``key`` identifies the layer completely (op type, channels, kernel, stride, input
    size ...): two layers with the same key cost the same. ``build`` returns a fresh
    standalone module that takes a tensor of ``input_shape`` (without the batch dim).
    A unit may take several inputs (e.g. a sum of skip connections): ``input_shape``
    is then the shape of each, and ``num_inputs`` how many.
    """

    key: str
    input_shape: tuple[int, ...]
    build: Callable[[], nn.Module] = field(compare=False, repr=False)
    num_inputs: int = 1


class SearchSpace(ABC):
    """A declarative search space. Subclasses set ``name`` and implement the methods.

    ``input_shape`` arguments are ``(channels, n_mels, frames)``: the log-mel image
    a model receives, without the batch dimension.
    """

    name: str = ""
    # True when every categorical lists its options from the smaller to the larger network
    # (what ``extreme_arch`` relies on); mobilenetv3 does, enas_macro's op choice does not.
    options_by_size: bool = False
    # Decisions whose options are no larger or smaller network than each other (an
    # activation: no weights, no size). The extreme archs fix them like any other
    # decision; the sandwich rule can draw them afresh per step (``trainer.sandwich_unsized``).
    unsized_decisions: tuple[str, ...] = ()

    @property
    @abstractmethod
    def decisions(self) -> Sequence[Decision]:
        """The ordered decisions; names are unique and systematic (``l3_kernel``)."""

    @abstractmethod
    def supernet(self, *, num_classes: int, input_shape: InputShape) -> "Supernet":
        """A weight-shared module holding every (layer, choice); ``forward(x, arch)``."""

    @abstractmethod
    def build(self, arch: Arch, *, num_classes: int, input_shape: InputShape) -> nn.Module:
        """A standalone module holding only the ops ``arch`` chooses; ``forward(x)``."""

    @abstractmethod
    def layers(self, arch: Arch, *, num_classes: int, input_shape: InputShape) -> list[LayerCost]:
        """The built network as a list of costed units (sum of their latencies = predicted)."""

    @property
    def presets(self) -> dict[str, Arch]:
        """Named reference archs (e.g. ``mobilenetv3_small``); empty by default."""
        return {}

    def preset(self, name: str) -> tuple["SearchSpace", Arch]:
        """The space a named preset lives in, and its arch.

        By default that is this space and ``self.presets[name]``. A space whose presets
        need another configuration (MobileNetV3-Large vs -Small backbones) overrides
        this to return a space configured for the preset, all other settings kept.
        """
        presets = self.presets
        if name not in presets:
            raise ValueError(f"space {self.name!r} has no preset {name!r}; available: {sorted(presets)}")
        return self, presets[name]

    def arch_string(self, arch: Arch) -> str:
        """A compact human-readable form; spaces override it with something terser."""
        parts = []
        for value in arch.values:
            parts.append("+".join(map(str, value)) if isinstance(value, tuple) else str(value))
        return "|".join(parts)

    # ---- shared machinery, not meant to be overridden -------------------------------

    def arch(self, values: Sequence[ArchValue] | Mapping[str, ArchValue]) -> Arch:
        """Validate and wrap one value per decision (a sequence in order, or a mapping)."""
        decisions = list(self.decisions)
        if isinstance(values, Mapping):
            missing = [d.name for d in decisions if d.name not in values]
            extra = sorted(set(values) - {d.name for d in decisions})
            if missing or extra:
                raise ValueError(
                    f"arch does not fit space {self.name!r}: missing {missing}, unknown {extra}"
                )
            values = [values[d.name] for d in decisions]
        if len(values) != len(decisions):
            raise ValueError(
                f"space {self.name!r} has {len(decisions)} decisions, got {len(values)} values"
            )
        checked = tuple(d.validate(v) for d, v in zip(decisions, values))
        return Arch(self.name, tuple(d.name for d in decisions), checked)

    def arch_from_json_dict(self, data: Mapping[str, Any]) -> Arch:
        space, choices = arch_from_json_dict(data)
        if space != self.name:
            raise ValueError(f"arch is for space {space!r}, not {self.name!r}")
        return self.arch(choices)

    def load_arch(self, path: str | Path) -> Arch:
        """Read an arch file (``best_arch.json`` or any file holding one arch JSON)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read arch file {path}: {err}") from err
        if "arch" in data and isinstance(data["arch"], Mapping):
            data = data["arch"]
        return self.arch_from_json_dict(data)

    def extreme_arch(self, *, largest: bool) -> Arch:
        """The largest (or smallest) arch of the space: the sandwich rule's teacher and its
        smallest student (``nas.search.sampling``).

        Derived from the decisions' option order: a space lists each categorical's options
        from the smallest to the largest network (kernel sizes and expansion ratios
        ascending, ``False`` before ``True`` for an added block), so the largest arch takes
        every last option and every earlier input, the smallest every first option and no
        input. A space whose options are not in that order leaves ``options_by_size`` False
        and has no extremes (ValueError).
        """
        check_options_by_size(self)
        values: list[ArchValue] = []
        for d in self.decisions:
            if isinstance(d, Categorical):
                values.append(d.options[-1] if largest else d.options[0])
            else:
                values.append(tuple(range(d.num_inputs)) if largest else ())
        return self.arch(values)

    def random_arch(self, rng: np.random.Generator) -> Arch:
        """Uniform sample: each categorical uniformly, each earlier input with p = 1/2."""
        return self.arch(uniform_values(self.decisions, rng))


def check_options_by_size(space: SearchSpace) -> None:
    if not space.options_by_size:
        raise ValueError(f"space {space.name!r} does not list its options by size, so it has no largest or "
                         "smallest arch (needed by trainer.sampling=sandwich, experiment=quick's sampling): use "
                         "trainer.sampling=controller, or, in your own space, list every decision's options "
                         "smallest first and set options_by_size = True (README, \"Adding a search space\")")


def uniform_values(decisions: Sequence[Decision], rng: np.random.Generator) -> tuple[ArchValue, ...]:
    """One uniform draw: each categorical uniformly, each input independently with p = 1/2
    (``SearchSpace.random_arch`` and the random and evolution controllers)."""
    values: list[ArchValue] = []
    for d in decisions:
        if isinstance(d, Categorical):
            values.append(d.options[int(rng.integers(d.size))])
        else:
            values.append(tuple(int(i) for i in np.flatnonzero(rng.random(d.num_inputs) < 0.5)))
    return tuple(values)


def tilted_arch(space: SearchSpace, rng: np.random.Generator) -> Arch:
    """One random arch from anywhere between the space's smallest and largest arch.

    Uniform archs of a space with many decisions all sit near its middle (on the quick
    mobilenetv3 space 90% of them predict 0.08-0.14 ms, of the 0.05-0.21 ms between its
    smallest and largest arch). So this draws a tilt ``t`` in [0, 1] and takes, per
    decision, the smallest arch's value (``t < 1/2``) or the largest's (``t > 1/2``) with
    probability ``|2t - 1|``, else a uniform value: ``t = 1/2`` is a uniform draw, the
    ends are the extreme archs. Needs ``options_by_size`` (``extreme_arch``).
    """
    smallest = space.extreme_arch(largest=False).values
    largest = space.extreme_arch(largest=True).values
    tilt = float(rng.random())
    extreme = largest if tilt > 0.5 else smallest
    uniform = uniform_values(space.decisions, rng)
    take_extreme = rng.random(len(uniform)) < abs(2.0 * tilt - 1.0)
    return space.arch([e if pick else u for e, u, pick in zip(extreme, uniform, take_extreme)])
