"""Spaces made of a sequence of layers, each with its own choices: one declaration per
layer, from which the decisions and the compact string codec are derived.

A subclass declares, per layer, its choices (``layer_choices``: ``{key: options}``
for a categorical choice, ``{key: n}`` for a choice of any subset of ``n`` earlier
inputs) and how one layer's values read as a token (``format_layer`` /
``parse_layer``). Derived here, once for every such space: the decisions (named
``l{i}_{key}``, in layer order then key order), an arch as per-layer dicts and back,
and ``arch_string`` / ``arch_from_string`` (tokens joined by ``token_separator``).
"""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from typing import Any, Mapping, Sequence, Union

from search_spaces.base import Arch, ArchValue, Categorical, Decision, InputChoice, SearchSpace, check_options_by_size

Options = Union[tuple[Any, ...], int]  # categorical options, or the number of earlier inputs


def decision_name(layer: int, key: str) -> str:
    return f"l{layer}_{key}"


class LayeredSpace(SearchSpace):
    """A ``SearchSpace`` whose decisions are per-layer choices (see the module docstring)."""

    token_separator: str = "|"

    @abstractmethod
    def layer_choices(self) -> Sequence[Mapping[str, Options]]:
        """Per layer, ``{key: options}`` (a tuple) or ``{key: num_inputs}`` (an int)."""

    @abstractmethod
    def format_layer(self, layer: int, values: Mapping[str, ArchValue]) -> str:
        """One layer's values as a token (no ``token_separator`` inside)."""

    @abstractmethod
    def parse_layer(self, layer: int, token: str) -> dict[str, ArchValue]:
        """Inverse of ``format_layer``; ValueError naming the layer for a bad token."""

    @cached_property
    def decisions(self) -> tuple[Decision, ...]:  # type: ignore[override]
        self._check_declared_keys()
        decisions: list[Decision] = []
        for i, choices in enumerate(self.layer_choices()):
            for key, options in choices.items():
                name = decision_name(i, key)
                decisions.append(InputChoice(name, options) if isinstance(options, int) else Categorical(name, tuple(options)))
        return tuple(decisions)

    @property
    def num_layers(self) -> int:
        return len(self.layer_choices())

    def layer_values(self, arch: Arch) -> list[dict[str, ArchValue]]:
        """``arch`` as one ``{key: value}`` per layer (checked against this space)."""
        if not isinstance(arch, Arch):
            raise TypeError(f"expected an Arch, got {type(arch).__name__}")
        if arch.space != self.name:
            raise ValueError(f"arch is for space {arch.space!r}, not {self.name!r}")
        choice = self.arch(arch.as_dict()).as_dict()
        return [{key: choice[decision_name(i, key)] for key in keys} for i, keys in enumerate(self.layer_choices())]

    # Layer keys whose options run from the larger to the smaller network (``skip``:
    # False keeps the block, True removes it); ``extreme_arch`` reverses them.
    shrinking_keys: tuple[str, ...] = ()
    # Layer keys of no size (``SearchSpace.unsized_decisions``, one decision per layer that has the key).
    unsized_keys: tuple[str, ...] = ()

    def _check_declared_keys(self) -> None:
        """A misspelled ``shrinking_keys`` or ``unsized_keys`` entry would silently pick the
        wrong largest and smallest archs: refuse keys no layer has."""
        keys = {key for choices in self.layer_choices() for key in choices}
        for attribute in ("shrinking_keys", "unsized_keys"):
            unknown = sorted(set(getattr(self, attribute)) - keys)
            if unknown:
                raise ValueError(f"{type(self).__name__}.{attribute} names {unknown}, a key no layer of "
                                 f"layer_choices() has (its keys: {sorted(keys)})")

    @cached_property
    def unsized_decisions(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(decision_name(i, k) for i, choices in enumerate(self.layer_choices()) for k in choices
                     if k in self.unsized_keys)

    def extreme_arch(self, *, largest: bool) -> Arch:
        """As ``SearchSpace.extreme_arch``, with ``shrinking_keys`` taken in reverse order."""
        check_options_by_size(self)
        layers = []
        for choices in self.layer_choices():
            row: dict[str, ArchValue] = {}
            for key, options in choices.items():
                if isinstance(options, int):  # an input choice: every earlier layer, or none
                    row[key] = tuple(range(options)) if largest else ()
                else:
                    row[key] = options[0] if largest == (key in self.shrinking_keys) else options[-1]
            layers.append(row)
        return self.arch_from_layers(layers)

    def arch_from_layers(self, layers: Sequence[Mapping[str, ArchValue]]) -> Arch:
        return self.arch({decision_name(i, k): v for i, values in enumerate(layers) for k, v in values.items()})

    def arch_string(self, arch: Arch) -> str:
        return self.token_separator.join(self.format_layer(i, v) for i, v in enumerate(self.layer_values(arch)))

    def arch_from_string(self, text: str) -> Arch:
        """Inverse of ``arch_string``."""
        tokens = text.strip().split(self.token_separator)
        if len(tokens) != self.num_layers:
            raise ValueError(f"arch string {text!r} has {len(tokens)} layers; the space has {self.num_layers}")
        return self.arch_from_layers([self.parse_layer(i, token) for i, token in enumerate(tokens)])
