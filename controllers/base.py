"""The controller contract: who proposes architectures, seeing only a space's decisions.

A controller is built from ``space.decisions`` (``Categorical`` and ``InputChoice``
rows, never a torch module of the child) and proposes one value per decision, in
decision order, exactly as ``SearchSpace.arch(values)`` accepts them: an option value
for a ``Categorical``; a sorted tuple of chosen input indices for an ``InputChoice``.

The search loop drives every controller the same way::

    samples = controller.sample(n)                 # proposals (no gradient graph kept)
    rewards = [score(s.values) for s in samples]   # accuracy/latency -> reward
    stats = controller.update(samples, rewards)    # learn; returns numbers to log

and may call ``sample`` without a following ``update`` (e.g. one arch per training
minibatch in the shared-weight phase). ``state_dict()`` holds everything that decides
the future (weights, optimizer, baseline, population, RNG states), so a controller
restored with ``load_state_dict`` continues exactly like one that was never stopped.
The dict holds only tensors, numbers, strings, lists, tuples and dicts, so it saves
with ``torch.save`` and loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from search_spaces.base import ArchValue, Categorical, Decision, InputChoice


@dataclass(frozen=True)
class Sample:
    """One proposed architecture.

    ``log_prob`` and ``entropy`` (nats) describe the distribution the sample was drawn
    from at sampling time; each controller documents what that distribution is.
    """

    values: tuple[ArchValue, ...]
    log_prob: float
    entropy: float


class Controller(ABC):
    """Base class: validates the decisions, samples and rewards; subclasses do the rest.

    ``threads``: the intra-op CPU thread count ``sample``, ``update`` and
    ``probabilities`` run best with, or ``None`` for the caller's. The search applies it around every call
    (``nas.runtime.torch_threads``); a controller never changes thread counts itself.
    """

    threads: int | None = None

    def __init__(self, decisions: Sequence[Decision], *, seed: int = 0) -> None:
        self.decisions: tuple[Decision, ...] = check_decisions(decisions)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"controller seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)

    @abstractmethod
    def sample(self, n: int) -> list[Sample]:
        """``n`` proposals, each valid for the space the decisions came from."""

    @abstractmethod
    def update(self, samples: Sequence[Sample], rewards: Sequence[float]) -> dict[str, float]:
        """Learn from ``rewards[i]`` earned by ``samples[i]``; returns statistics to log."""

    @abstractmethod
    def probabilities(self) -> dict[str, list[float]]:
        """Per decision name: the current probability of each option (``Categorical``),
        or of including each input (``InputChoice``)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """A deep copy of everything that decides future samples and updates."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (of a controller built with the same decisions)."""

    # ---- helpers shared by the subclasses --------------------------------------------

    def _check_update(self, samples: Sequence[Sample], rewards: Sequence[float]) -> np.ndarray:
        """Rewards as a float array; ValueError for mismatched lengths, bad samples, NaN."""
        if len(samples) != len(rewards):
            raise ValueError(f"update got {len(samples)} samples but {len(rewards)} rewards")
        if len(samples) == 0:
            raise ValueError("update needs at least one (sample, reward) pair")
        for s in samples:
            self._check_values(s.values)
        out = np.asarray([float(r) for r in rewards], dtype=np.float64)
        if not np.all(np.isfinite(out)):
            raise ValueError(f"rewards must be finite numbers, got {list(rewards)}")
        return out

    def _check_values(self, values: Sequence[ArchValue]) -> None:
        if len(values) != len(self.decisions):
            raise ValueError(
                f"a sample has {len(values)} values but the controller has "
                f"{len(self.decisions)} decisions"
            )
        for decision, value in zip(self.decisions, values):
            decision.validate(value)

    def _check_state_keys(self, state: dict[str, Any], keys: Sequence[str]) -> None:
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(
                f"{type(self).__name__} state is missing {missing}: was it saved by another "
                "controller?"
            )
        if state.get("decision_names") != [d.name for d in self.decisions]:
            raise ValueError(
                f"{type(self).__name__} state was saved for other decisions "
                f"({state.get('decision_names')}); build the controller from the same space"
            )


def check_decisions(decisions: Sequence[Decision]) -> tuple[Decision, ...]:
    """The decisions as a tuple; TypeError/ValueError for anything a controller cannot use."""
    decisions = tuple(decisions)
    if not decisions:
        raise ValueError("a controller needs at least one decision")
    for d in decisions:
        if not isinstance(d, (Categorical, InputChoice)):
            raise TypeError(f"decisions must be Categorical or InputChoice, got {type(d).__name__}")
        if isinstance(d, InputChoice) and d.num_inputs < 0:
            raise ValueError(f"decision {d.name!r} has num_inputs={d.num_inputs} < 0")
    names = [d.name for d in decisions]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"decision names must be unique, repeated: {repeated}")
    return decisions


def check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"sample(n) needs a positive integer n, got {n!r}")
    return int(n)


def uniform_entropy(decisions: Sequence[Decision]) -> float:
    """Entropy (nats) of the uniform distribution of ``uniform_values``; minus its log-prob."""
    return sum(
        math.log(d.size) if isinstance(d, Categorical) else d.num_inputs * math.log(2.0)
        for d in decisions
    )


def uniform_probabilities(decisions: Sequence[Decision]) -> dict[str, list[float]]:
    return {
        d.name: [1.0 / d.size] * d.size if isinstance(d, Categorical) else [0.5] * d.num_inputs
        for d in decisions
    }


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """A numpy Generator's state as plain Python values (safe for ``weights_only`` loading)."""
    return _plain(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
