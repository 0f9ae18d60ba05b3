"""Robust relative latency: models timed in turns, round after round, under the same load.

On a machine shared with other jobs, absolute figures swing several-fold with the load
(one model read 3.6 and 16 ms minutes apart on a busy 2-core box; a 50-run median 3.5
to 6.0 ms within a minute on an idle one). Timing models back to back, in turns, and
keeping medians over rounds puts them all under the same load; a ratio taken that way
varies much less (on a shared 2-core VM the median of 7 ratios varied by +-1.2% between
repeats, where the ratio of each model's best reading over 3 rounds varied by +-2.5%).

``time_in_turns`` is the one timing-in-turns loop for one-model timing functions: NetAdapt
(``RelativeLatency``: every latency as a ratio to the unpruned model, and a longer
confirmation before a stop) and a latency table fed by a one-model function
(``nas.latency.table.in_turns``). Models prepared up front are timed together instead
(``nas.latency.timing.time_interleaved``: ``melnas-compare --remeasure``, the table).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

M = TypeVar("M")
# A decision that ends a loop (the target is reached) is taken on a measurement this many
# times longer: on a shared VM a 15-round median ratio read 0.571 in the loop for a model
# whose final check read 0.658 (re-timed idle: 0.59-0.63).
CONFIRM_FACTOR = 3


def time_in_turns(models: Sequence[M], measure: Callable[[M], float], rounds: int) -> list[list[float]]:
    """``readings[i][r]``: model ``i``'s time in round ``r`` (``measure(model)``, ms).

    Each round times every model once; round ``r`` starts at model ``r mod n`` and goes
    round the list, so no model is always timed first or always right after another.
    """
    if not models:
        raise ValueError("no models to time")
    readings: list[list[float]] = [[] for _ in models]
    n = len(models)
    for r in range(max(1, rounds)):
        for i in [(r + j) % n for j in range(n)]:
            readings[i].append(measure(models[i]))
    return readings


@dataclass(frozen=True)
class TurnsMeasurement:
    """``model`` and ``reference`` timed in turns, ``rounds`` times."""

    ratio: float  # the median over rounds of model ms / reference ms
    model_ms: float  # median of the model's readings
    reference_ms: float  # median of the reference's readings


def measure_in_turns(
    model: M, reference: M, measure: Callable[[M], float], rounds: int
) -> TurnsMeasurement:
    """Latency of ``model`` relative to ``reference``: the median of per-round ratios."""
    model_times, reference_times = time_in_turns([model, reference], measure, rounds)
    return TurnsMeasurement(
        ratio=statistics.median(m / r for m, r in zip(model_times, reference_times)),
        model_ms=statistics.median(model_times),
        reference_ms=statistics.median(reference_times),
    )


class RelativeLatency:
    """Latencies of models as ratios to one ``reference``, in ms at the load of the start.

    ``reference_ms`` is the median of ``rounds`` readings of the reference, taken once;
    ``measure_ms(model)`` is ``reference_ms`` x the model's ratio measured in turns, so a
    load that changes between calls does not move it. With ``confirm_below``, a model
    that measures at or under that many ms is measured again ``confirm_factor`` times
    longer, and that figure is the one returned: a stop is decided on it.
    """

    def __init__(self, reference: M, measure: Callable[[M], float], *, rounds: int,
                 confirm_factor: int = CONFIRM_FACTOR) -> None:
        if rounds < 1 or confirm_factor < 1:
            raise ValueError(f"need rounds >= 1 and confirm_factor >= 1, got {rounds}, {confirm_factor}")
        self.reference, self.measure = reference, measure
        self.rounds, self.confirm_factor = rounds, confirm_factor
        self.reference_ms = statistics.median(measure(reference) for _ in range(rounds))

    def turns(self, model: M, *, confirm_below: float | None = None) -> TurnsMeasurement:
        turns = measure_in_turns(model, self.reference, self.measure, self.rounds)
        if confirm_below is not None and self.reference_ms * turns.ratio <= confirm_below:
            turns = measure_in_turns(model, self.reference, self.measure, self.confirm_factor * self.rounds)
        return turns

    def ratio(self, model: M) -> float:
        return self.turns(model).ratio

    def measure_ms(self, model: M, *, confirm_below: float | None = None) -> float:
        return self.reference_ms * self.turns(model, confirm_below=confirm_below).ratio
