"""Statistics of a multi-seed study: mean +- std per method and paired bootstrap intervals.

A study repeats the matched-budget comparison over search seeds (``melnas-study``). Every
method (a controller's retrained winner, or a preset) gets one test score per search seed
(the mean over its training seeds). Two methods are compared *paired* by search seed: the
seed fixes the data order and the supernet's initialisation for every controller, so the
per-seed difference removes the part of the noise the methods share.

The interval of a mean paired difference is a percentile bootstrap: ``resamples`` draws of
the seeds with replacement (numpy ``default_rng(seed)``), the mean difference of each
draw, and the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those
means. With 3 seeds the bootstrap has at most 10 distinct resample means, so the interval is
coarse and tends to be too narrow (Efron & Tibshirani 1993, ch. 13): it says "the sign
held on every seed" more than it bounds the effect. Read it with ``n`` next to it.

A searched winner's accuracy follows its latency (a soft latency reward lets each seed's
winner land anywhere around the target), so a plain accuracy difference mixes "a better
trade-off" with "a different point of it". ``latency_matched`` compares methods at a
common latency instead: each model's accuracy minus the straight accuracy-latency line
fitted by least squares to the searched winners' per-seed means (presets excluded: one
network each, they would pull the line to their own point). The line is fitted on the
same models it adjusts, so read it as a description of this study, not a prediction.

How many search seeds a comparison needs (``seeds_needed``) is the usual sample size of a
paired t-test: the fewest seeds n at which ``(t_{(1+c)/2, n-1} + t_{power, n-1}) * std /
sqrt(n) <= |difference|``, with ``std`` the per-seed std of the paired differences
observed so far (Cohen 1988; the t quantiles make it exact enough for small n). With that
many seeds an interval of the mean difference would exclude 0 with probability ``power``
(``POWER``, 0.8: the convention), if the true difference and std were those assumed. It is a planning
figure for the next study, read off this one's noise, not a test of this one.

``score_against_test`` pairs the winners twice: by the score their search picked them
with and by their retrained test accuracy. The scores compare only where the searches of
a seed picked on one supernet (the study decides which seeds: ``winner_scores``); the r
of the two per-seed differences gets Fisher's interval, which with 10 seeds is wide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

METRICS = ("accuracy", "recording_accuracy", "f1_macro", "latency_ms")
PRESET_PREFIX = "preset:"  # a study method that is a fixed network, not a search's winner


@dataclass(frozen=True)
class StudyRow:
    """One retrained model of the study: a method's model for one search seed and training seed."""

    method: str  # a controller (enas_lstm, random, evolution) or preset:<name>
    seed: int  # the search seed (for a preset: the seed of the study round it was trained in)
    train_seed: int
    accuracy: float  # test accuracy per window
    recording_accuracy: float  # test accuracy per recording (mean of its windows' probabilities)
    f1_macro: float
    latency_ms: float  # measured, batch 1
    run_dir: str = ""
    latency_runtime: str = ""  # what latency_ms was timed in, e.g. "onnxruntime fp32" (metrics.json)

    def value(self, metric: str) -> float:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
        return float(getattr(self, metric))


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float  # sample standard deviation (ddof=1); 0 for a single value
    n: int


@dataclass(frozen=True)
class PairedDifference:
    """``method - baseline`` of one metric, paired by search seed."""

    method: str
    baseline: str
    metric: str
    per_seed: dict[int, float]
    mean: float
    low: float  # the bootstrap interval's bounds
    high: float
    confidence: float

    @property
    def n(self) -> int:
        return len(self.per_seed)


@dataclass(frozen=True)
class Bootstrap:
    """How the paired intervals are drawn (stated in every report)."""

    resamples: int = 10_000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resamples < 1:
            raise ValueError(f"study.bootstrap.resamples must be >= 1, got {self.resamples}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"study.bootstrap.confidence must lie in (0, 1), got {self.confidence}")

    def describe(self) -> str:
        return (f"{self.confidence:.0%} percentile bootstrap over search seeds "
                f"({self.resamples} resamples with replacement, numpy default_rng seed {self.seed})")


def spread(values: Iterable[float]) -> Spread:
    """Mean and sample standard deviation (ddof=1; 0 for one value)."""
    array = np.asarray(list(values), dtype=float)
    if array.size == 0:
        raise ValueError("no values to summarise")
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return Spread(float(array.mean()), std, int(array.size))


def bootstrap_interval(values: Sequence[float], bootstrap: Bootstrap = Bootstrap()) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (see the module docstring)."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(bootstrap.seed)
    draws = rng.integers(0, array.size, size=(bootstrap.resamples, array.size))
    means = array[draws].mean(axis=1)
    tail = (1.0 - bootstrap.confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def per_seed_means(rows: Sequence[StudyRow], metric: str) -> dict[str, dict[int, float]]:
    """method -> search seed -> the metric's mean over that seed's training seeds."""
    grouped: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        grouped.setdefault(row.method, {}).setdefault(row.seed, []).append(row.value(metric))
    return {m: {s: float(np.mean(v)) for s, v in sorted(seeds.items())} for m, seeds in grouped.items()}


def method_spreads(rows: Sequence[StudyRow], metric: str) -> dict[str, Spread]:
    """method -> mean +- std of the metric over its search seeds (each the mean of its
    training seeds), in the order the methods first appear."""
    return {m: spread(seeds.values()) for m, seeds in per_seed_means(rows, metric).items()}


def training_spreads(rows: Sequence[StudyRow], metric: str) -> dict[str, float]:
    """method -> the mean over search seeds of the std over training seeds (nan with one
    training seed): how much of the spread is retraining noise."""
    grouped: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        grouped.setdefault(row.method, {}).setdefault(row.seed, []).append(row.value(metric))
    out: dict[str, float] = {}
    for method, seeds in grouped.items():
        stds = [float(np.std(v, ddof=1)) for v in seeds.values() if len(v) > 1]
        out[method] = float(np.mean(stds)) if stds else math.nan
    return out


@dataclass(frozen=True)
class SeedsNeeded:
    """Search seeds a paired difference would need (see the module docstring)."""

    per_seed_std: float  # std of the per-seed differences observed (ddof=1)
    power: float
    at_observed: int | None  # to resolve a true difference the size of the observed mean
    effect: float
    at_effect: int | None  # to resolve a true difference of ``effect``


POWER = 0.8  # the conventional power of a sample size (Cohen 1988)


def seeds_for_difference(std: float, difference: float, *, confidence: float = 0.95, power: float = POWER,
                         most: int = 100_000) -> int | None:
    """The fewest search seeds (>= 2) at which a paired difference of ``difference`` with
    per-seed std ``std`` is resolved (module docstring); None for a difference of 0 or more
    than ``most`` seeds."""
    if difference == 0.0 or not math.isfinite(std):
        return None
    z = stats.norm.ppf((1.0 + confidence) / 2.0) + stats.norm.ppf(power)
    n = max(2, math.ceil((z * std / abs(difference)) ** 2))  # the normal approximation: t only raises it
    while n <= most:
        if (stats.t.ppf((1.0 + confidence) / 2.0, n - 1) + stats.t.ppf(power, n - 1)) * std / math.sqrt(n) <= abs(difference):
            return n
        n += 1
    return None


def seeds_needed(diff: PairedDifference, effect: float, power: float = POWER) -> SeedsNeeded | None:
    """How many search seeds ``diff``'s comparison needs, at its own mean and at ``effect``;
    None with fewer than 2 seeds (no std yet)."""
    if diff.n < 2:
        return None
    std = float(np.std(list(diff.per_seed.values()), ddof=1))
    def seeds(difference: float) -> int | None:
        return seeds_for_difference(std, difference, confidence=diff.confidence, power=power)
    return SeedsNeeded(std, power, seeds(diff.mean), effect, seeds(effect))


def paired_differences(rows: Sequence[StudyRow], metric: str, baseline: str,
                       bootstrap: Bootstrap = Bootstrap()) -> list[PairedDifference]:
    """Every other method minus ``baseline``, on the search seeds both have."""
    means = per_seed_means(rows, metric)
    if baseline not in means:
        raise ValueError(f"the baseline {baseline!r} has no finished runs; methods: {', '.join(means)}")
    return pair_by_seed(means, metric, baseline, bootstrap)


def pair_by_seed(means: Mapping[str, Mapping[int, float]], metric: str, baseline: str,
                 bootstrap: Bootstrap = Bootstrap()) -> list[PairedDifference]:
    """Every other method minus ``baseline`` from ``method -> search seed -> value``, on the
    seeds both have (none when ``baseline`` has none)."""
    out: list[PairedDifference] = []
    for method, seeds in means.items():
        if method == baseline:
            continue
        common = sorted(set(seeds) & set(means.get(baseline, {})))
        if not common:
            continue
        diffs = {s: seeds[s] - means[baseline][s] for s in common}
        low, high = bootstrap_interval(list(diffs.values()), bootstrap)
        out.append(PairedDifference(method, baseline, metric, diffs, float(np.mean(list(diffs.values()))),
                                    low, high, bootstrap.confidence))
    return out


@dataclass(frozen=True)
class ScoreAgainstTest:
    """A method's winners against the baseline's on the supernet that picked both, and after
    retraining, paired by search seed: does a winner the supernet scores higher retrain
    better? A controller that finds archs its supernet scores higher than random search's,
    and no better test accuracy, is held back by the score it climbs (its bias, or its
    noise: a winner is the best of many noisy scores), not by how well it climbs it."""

    score: PairedDifference  # the final phase's score of the winner minus the baseline's
    test: PairedDifference  # test accuracy (window) minus the baseline's, on the same seeds
    correlation: float  # Pearson r of the two per-seed differences; nan below 3 seeds or for a constant
    correlation_low: float  # its Fisher-z interval at the bootstrap's confidence; nan below 4 seeds
    correlation_high: float


def score_against_test(scores: Mapping[str, Mapping[int, float]], rows: Sequence[StudyRow], baseline: str,
                       bootstrap: Bootstrap = Bootstrap()) -> list[ScoreAgainstTest]:
    """``scores``: method -> search seed -> its winner's score, for the seeds whose searches
    picked on one supernet; each method against ``baseline`` on the seeds where both have a
    score and a retrained model."""
    accuracy = per_seed_means(rows, "accuracy")
    out: list[ScoreAgainstTest] = []
    for method in scores:
        pair = (method, baseline)
        if method == baseline or any(m not in scores or m not in accuracy for m in pair):
            continue
        seeds = sorted(set.intersection(*(set(values[m]) for values in (scores, accuracy) for m in pair)))
        if not seeds:
            continue
        (score,) = pair_by_seed({m: {s: scores[m][s] for s in seeds} for m in pair}, "supernet_score", baseline, bootstrap)
        (test,) = pair_by_seed({m: {s: accuracy[m][s] for s in seeds} for m in pair}, "accuracy", baseline, bootstrap)
        x = np.array([score.per_seed[s] for s in seeds])
        y = np.array([test.per_seed[s] for s in seeds])
        constant = len(seeds) < 3 or np.ptp(x) == 0.0 or np.ptp(y) == 0.0
        correlation = math.nan if constant else float(np.corrcoef(x, y)[0, 1])
        out.append(ScoreAgainstTest(score, test, correlation,
                                    *fisher_interval(correlation, len(seeds), bootstrap.confidence)))
    return out


def fisher_interval(r: float, n: int, confidence: float) -> tuple[float, float]:
    """The usual interval of a Pearson r from n pairs: tanh(atanh(r) +- z / sqrt(n - 3))
    (Fisher 1921); nan below 4 pairs or for an undefined r."""
    if n < 4 or math.isnan(r):
        return math.nan, math.nan
    centre = math.atanh(max(-1.0, min(1.0, r)) * (1.0 - 1e-12))  # r = +-1: a zero-width interval at it
    half = stats.norm.ppf((1.0 + confidence) / 2.0) / math.sqrt(n - 3)
    return math.tanh(centre - half), math.tanh(centre + half)


@dataclass(frozen=True)
class LatencyLine:
    """``accuracy = intercept + slope_per_ms * latency_ms``, fitted to ``n`` searched winners."""

    slope_per_ms: float
    intercept: float
    correlation: float  # Pearson r of accuracy and latency over the fitted points
    n: int

    def expected(self, latency_ms: float) -> float:
        return self.intercept + self.slope_per_ms * latency_ms


@dataclass(frozen=True)
class LatencyMatched:
    """Accuracy minus the latency line: per method, and paired against the baseline."""

    line: LatencyLine
    spreads: dict[str, Spread]
    differences: list[PairedDifference]


def is_searched(method: str) -> bool:
    """A controller's winner, not a preset (``preset:<name>``)."""
    return not method.startswith(PRESET_PREFIX)


def latency_line(rows: Sequence[StudyRow]) -> LatencyLine | None:
    """The least-squares accuracy-latency line of the searched winners' per-seed means;
    None with fewer than 3 of them or a single latency."""
    accuracy, latency = per_seed_means(rows, "accuracy"), per_seed_means(rows, "latency_ms")
    points = [(latency[m][s], accuracy[m][s]) for m in accuracy if is_searched(m) for s in accuracy[m]]
    if len(points) < 3:
        return None
    x, y = np.array(points, dtype=float).T
    if np.ptp(x) == 0.0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    correlation = float(np.corrcoef(x, y)[0, 1]) if np.ptp(y) > 0.0 else 0.0
    return LatencyLine(float(slope), float(intercept), correlation, len(points))


def latency_matched(rows: Sequence[StudyRow], baseline: str,
                    bootstrap: Bootstrap = Bootstrap()) -> LatencyMatched | None:
    """Each method's accuracy at a matched latency (see the module docstring); None when no
    line can be fitted."""
    line = latency_line(rows)
    if line is None:
        return None
    adjusted = [replace(r, accuracy=r.accuracy - line.expected(r.latency_ms)) for r in rows]
    return LatencyMatched(line, method_spreads(adjusted, "accuracy"),
                          paired_differences(adjusted, "accuracy", baseline, bootstrap))


def summary_table(rows: Sequence[StudyRow]) -> list[dict[str, object]]:
    """One dict per method: n seeds and mean/std of every metric (the study.csv rows)."""
    spreads: Mapping[str, dict[str, Spread]] = {metric: method_spreads(rows, metric) for metric in METRICS}
    table: list[dict[str, object]] = []
    for method in spreads["accuracy"]:
        entry: dict[str, object] = {"method": method, "seeds": spreads["accuracy"][method].n,
                                    "models": sum(r.method == method for r in rows)}
        for metric in METRICS:
            entry[f"{metric}_mean"] = spreads[metric][method].mean
            entry[f"{metric}_std"] = spreads[metric][method].std
        table.append(entry)
    return table
