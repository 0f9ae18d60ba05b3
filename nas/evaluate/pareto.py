"""The accuracy-latency Pareto front: higher accuracy and lower latency are better."""

from __future__ import annotations

import math
from typing import Sequence


def pareto_front(accuracy: Sequence[float | None], latency_ms: Sequence[float | None]) -> list[bool]:
    """``True`` for every point that no other point dominates.

    Point j dominates point i when it is at least as accurate and at least as fast, and
    strictly better in one of the two. Equal points do not dominate each other, so both
    stay on the front. A point with a missing (None/NaN) value is never on the front.
    """
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
        acc, lat = point
        dominated = any(
            other is not None and other[0] >= acc and other[1] <= lat and (other[0] > acc or other[1] < lat)
            for other in points
        )
        front.append(not dominated)
    return front


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))
