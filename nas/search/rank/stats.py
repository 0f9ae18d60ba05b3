"""Rank agreement between supernet scores and standalone accuracies.

Kendall's tau-b and Spearman's rho come from ``scipy.stats`` (ties handled there); the
two figures a user of the search cares about directly are where the supernet's top-1
lands among the standalone results, and how many of its top k are also the standalone
top k.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b of two paired score lists; NaN when either is constant."""
    if _constant(a, b):
        return math.nan
    return float(stats.kendalltau(a, b).statistic)


def spearman_rho(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two paired score lists; NaN when either is constant."""
    if _constant(a, b):
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


def rank_of_top1(predicted: Sequence[float], actual: Sequence[float]) -> int:
    """The 1-based standalone rank of the arch the supernet scores highest.

    Ties in ``predicted`` go to the first such arch; ties in ``actual`` count in its
    favour (rank = 1 + the number of archs strictly better standalone).
    """
    _check(predicted, actual)
    best = int(np.argmax(predicted))
    return 1 + int(np.sum(np.asarray(actual) > actual[best]))


def top_k_overlap(predicted: Sequence[float], actual: Sequence[float], k: int = 5) -> int:
    """How many of the supernet's top ``k`` are among the standalone top ``k`` (stable order)."""
    _check(predicted, actual)
    k = min(k, len(predicted))
    top_pred = set(np.argsort(-np.asarray(predicted), kind="stable")[:k].tolist())
    top_actual = set(np.argsort(-np.asarray(actual), kind="stable")[:k].tolist())
    return len(top_pred & top_actual)


def _constant(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether either list is constant (no ranking to correlate); checks the pairing first."""
    _check(a, b)
    return len(set(a)) == 1 or len(set(b)) == 1


def _check(a: Sequence[float], b: Sequence[float]) -> None:
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"rank statistics need two paired lists of >= 2 scores, got {len(a)} and {len(b)}")
