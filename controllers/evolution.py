"""Regularized (aging) evolution, Real et al. 2019 (arXiv 1802.01548), Algorithm 1.

The population holds the last ``population_size`` scored archs, oldest first. While it
is not full, proposals are uniform random archs (the paper's random initial
population). Once it is full, each proposal is a child of a tournament: draw
``sample_size`` members uniformly *with replacement* (as in Algorithm 1), take the one
with the highest reward (the first drawn on a tie), and mutate exactly one decision of
it: a categorical moves to a different option, an input choice flips one input. When
``update`` adds scored children, the oldest members die so that the population keeps
its size ("aging": a good arch survives only through its descendants).

Defaults are the paper's (population 100, sample 25; NNI uses the same); a quick CPU
search uses about 20 and 5 (``conf/controller/evolution.yaml`` exposes both).

Fit to the search loop: ``sample(n)`` draws ``n`` proposals from the current
population without changing it (a batch of asynchronous workers in the paper's terms);
``update(samples, rewards)`` appends them in order. Proposals never passed to
``update`` (e.g. archs that only trained the supernet) leave no trace but the RNG.

``Sample.log_prob``/``entropy`` describe the proposal that produced the sample: the
uniform distribution for random members; for a child, the one-decision mutation of its
parent (``log 1/#mutable + log 1/#alternatives``, and the entropy of that mutation).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np

from controllers.base import (
    Controller,
    Sample,
    check_count,
    rng_state,
    set_rng_state,
    uniform_entropy,
    uniform_probabilities,
)
from search_spaces.base import ArchValue, Categorical, Decision, uniform_values

Member = tuple[tuple[ArchValue, ...], float]  # (values, reward)


class EvolutionController(Controller):
    def __init__(
        self,
        decisions: Sequence[Decision],
        *,
        seed: int = 0,
        population_size: int = 100,
        sample_size: int = 25,
    ) -> None:
        super().__init__(decisions, seed=seed)
        if not _is_int(population_size) or population_size < 2:
            raise ValueError(f"evolution population_size must be an integer >= 2, got {population_size!r}")
        if not _is_int(sample_size) or not 1 <= sample_size <= population_size:
            raise ValueError(
                f"evolution sample_size must be an integer in [1, population_size={population_size}], "
                f"got {sample_size!r}"
            )
        self.population_size = int(population_size)
        self.sample_size = int(sample_size)
        self._rng = np.random.default_rng(self.seed)
        self._population: list[Member] = []
        self._best: Member | None = None
        self._num_evaluated = 0
        # Decisions a mutation can change, and how many alternatives each offers.
        self._mutable = [i for i, d in enumerate(self.decisions) if self._num_alternatives(d) > 0]
        alternatives = [self._num_alternatives(self.decisions[i]) for i in self._mutable]
        self._mutation_entropy = (
            math.log(len(alternatives)) + sum(math.log(a) for a in alternatives) / len(alternatives)
            if alternatives
            else 0.0
        )
        self._uniform_entropy = uniform_entropy(self.decisions)

    # ---- proposals -------------------------------------------------------------------

    def sample(self, n: int) -> list[Sample]:
        out = []
        for _ in range(check_count(n)):
            if len(self._population) < self.population_size:
                values = uniform_values(self.decisions, self._rng)
                out.append(Sample(values, -self._uniform_entropy, self._uniform_entropy))
            else:
                out.append(self._mutate(self._tournament_winner()))
        return out

    def _tournament_winner(self) -> tuple[ArchValue, ...]:
        drawn = self._rng.integers(len(self._population), size=self.sample_size)
        best = max(drawn, key=lambda i: self._population[i][1])  # first maximum on ties
        return self._population[best][0]

    def _mutate(self, parent: tuple[ArchValue, ...]) -> Sample:
        if not self._mutable:  # every decision has a single value: nothing can change
            return Sample(parent, 0.0, 0.0)
        index = self._mutable[int(self._rng.integers(len(self._mutable)))]
        decision = self.decisions[index]
        child = list(parent)
        if isinstance(decision, Categorical):
            others = [o for o in decision.options if o != parent[index]]
            child[index] = others[int(self._rng.integers(len(others)))]
        else:
            flipped = int(self._rng.integers(decision.num_inputs))
            child[index] = tuple(sorted(set(parent[index]) ^ {flipped}))  # type: ignore[arg-type]
        log_prob = -math.log(len(self._mutable)) - math.log(self._num_alternatives(decision))
        return Sample(tuple(child), log_prob, self._mutation_entropy)

    @staticmethod
    def _num_alternatives(decision: Decision) -> int:
        return decision.size - 1 if isinstance(decision, Categorical) else decision.num_inputs

    # ---- learning --------------------------------------------------------------------

    def update(self, samples: Sequence[Sample], rewards: Sequence[float]) -> dict[str, float]:
        r = self._check_update(samples, rewards)
        for s, reward in zip(samples, r):
            member = (self._canonical(s.values), float(reward))
            self._population.append(member)
            if self._best is None or member[1] > self._best[1]:
                self._best = member
        del self._population[: max(0, len(self._population) - self.population_size)]  # oldest die
        self._num_evaluated += len(samples)
        return {
            "reward_mean": float(r.mean()),
            "reward_max": float(r.max()),
            "entropy": float(np.mean([s.entropy for s in samples])),
            "population_size": float(len(self._population)),
            "population_reward_mean": float(np.mean([m[1] for m in self._population])),
            "best_reward": float(self._best[1]),  # type: ignore[index]
            "num_evaluated": float(self._num_evaluated),
        }

    @property
    def best(self) -> Member | None:
        """The highest-reward (values, reward) ever passed to ``update`` (the paper's answer)."""
        return self._best

    def probabilities(self) -> dict[str, list[float]]:
        """Option (or input inclusion) frequencies in the current population; uniform if empty."""
        if not self._population:
            return uniform_probabilities(self.decisions)
        size = len(self._population)
        out: dict[str, list[float]] = {}
        for i, d in enumerate(self.decisions):
            if isinstance(d, Categorical):
                counts = Counter(m[0][i] for m in self._population)
                out[d.name] = [counts[o] / size for o in d.options]
            else:
                counts = Counter(j for m in self._population for j in m[0][i])  # type: ignore[union-attr]
                out[d.name] = [counts[j] / size for j in range(d.num_inputs)]
        return out

    # ---- resuming --------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "decision_names": [d.name for d in self.decisions],
            "population_size": self.population_size,
            "sample_size": self.sample_size,
            "rng": rng_state(self._rng),
            "population": [(values, reward) for values, reward in self._population],
            "best": self._best,
            "num_evaluated": self._num_evaluated,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state_keys(state, ["rng", "population", "best", "num_evaluated"])
        saved = (state.get("population_size"), state.get("sample_size"))
        if saved != (self.population_size, self.sample_size):
            raise ValueError(
                f"evolution state has population_size={saved[0]}, sample_size={saved[1]}; "
                "this controller has "
                f"{self.population_size}, {self.sample_size}: resume with the same settings"
            )
        population = [(self._canonical(values), float(reward)) for values, reward in state["population"]]
        best = state["best"]
        set_rng_state(self._rng, state["rng"])
        self._population = population
        self._best = None if best is None else (self._canonical(best[0]), float(best[1]))
        self._num_evaluated = int(state["num_evaluated"])

    def _canonical(self, values: Sequence[Any]) -> tuple[ArchValue, ...]:
        self._check_values(values)
        return tuple(d.validate(v) for d, v in zip(self.decisions, values))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
