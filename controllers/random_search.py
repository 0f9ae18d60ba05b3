"""Random search: the matched-budget baseline every search must be compared with.

Each categorical is drawn uniformly and each earlier input is included with p = 1/2,
the same distribution (and the same use of the generator) as
``SearchSpace.random_arch``. Nothing is learned; ``update`` only reports statistics.
Li & Talwalkar (2019) found random search with weight sharing within 0.1% of ENAS on
CIFAR-10, which is why it is a first-class controller here.

(The module is not called ``random.py`` so that running a file from inside
``controllers/`` can never shadow the standard library's ``random``.)
"""

from __future__ import annotations

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
from search_spaces.base import Decision, uniform_values


class RandomController(Controller):
    """Uniform proposals; ``log_prob`` is the (constant) uniform log-probability."""

    def __init__(self, decisions: Sequence[Decision], *, seed: int = 0) -> None:
        super().__init__(decisions, seed=seed)
        self._rng = np.random.default_rng(self.seed)
        self._entropy = uniform_entropy(self.decisions)

    def sample(self, n: int) -> list[Sample]:
        return [
            Sample(uniform_values(self.decisions, self._rng), -self._entropy, self._entropy)
            for _ in range(check_count(n))
        ]

    def update(self, samples: Sequence[Sample], rewards: Sequence[float]) -> dict[str, float]:
        r = self._check_update(samples, rewards)
        return {
            "reward_mean": float(r.mean()),
            "reward_max": float(r.max()),
            "entropy": self._entropy,
        }

    def probabilities(self) -> dict[str, list[float]]:
        return uniform_probabilities(self.decisions)

    def state_dict(self) -> dict[str, Any]:
        return {
            "decision_names": [d.name for d in self.decisions],
            "rng": rng_state(self._rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state_keys(state, ["rng"])
        set_rng_state(self._rng, state["rng"])
