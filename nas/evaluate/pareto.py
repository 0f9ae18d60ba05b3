"""The accuracy-latency Pareto front: higher accuracy and lower latency are better."""

from __future__ import annotations

import math
from typing import Sequence


def pareto_front(
    accuracy: Sequence[float | None], latency_ms: Sequence[float | None], *, latency_tolerance: float = 0.0
) -> list[bool]:
    """``True`` for every point that no other point dominates.

    Point j dominates point i when it is at least as accurate and at least as fast, and
    strictly better in one of the two. Equal points do not dominate each other, so both
    stay on the front. A point with a missing (None/NaN) value is never on the front.

    Two latencies within ``latency_tolerance`` (a fraction of the larger) of each other
    count as equal: a timing's noise should not put a less accurate model on the front
    because it measured 1 us faster, nor take a more accurate one off it because it
    measured 1 us slower.
    """
    if latency_tolerance < 0:
        raise ValueError(f"latency_tolerance must be >= 0, got {latency_tolerance}")
    if len(accuracy) != len(latency_ms):
        raise ValueError(f"need one latency per accuracy, got {len(accuracy)} and {len(latency_ms)}")
    points = [
        (float(a), float(t)) if _known(a) and _known(t) else None for a, t in zip(accuracy, latency_ms)
    ]
    front = []
    for point in points:
        if point is None:
            front.append(False)
            continue
        dominated = any(other is not None and _dominates(other, point, latency_tolerance) for other in points)
        front.append(not dominated)
    return front


def _dominates(a: tuple[float, float], b: tuple[float, float], tolerance: float) -> bool:
    """Does ``a`` = (accuracy, latency) dominate ``b``, latencies within ``tolerance`` tied?"""
    tied = abs(a[1] - b[1]) <= tolerance * max(a[1], b[1])
    faster = a[1] < b[1] and not tied
    return a[0] >= b[0] and (faster or tied) and (a[0] > b[0] or faster)


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))
