"""Which archs ``melnas-rank`` compares: spread over the space, from its smallest to
its largest arch, by predicted latency, plus the search's own top archs.

The spread part depends only on the space, the latency table and ``seed``: two searches
of the same space on the same machine (one latency table file) draw the same archs, so
their standalone trainings are shared through the cache and only the supernet scores
differ between search options.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from search_spaces.base import Arch, SearchSpace, tilted_arch


def stratified_archs(
    space: SearchSpace, latency: Callable[[Arch], float], count: int, *, seed: int, pool: int = 400
) -> list[Arch]:
    """``count`` distinct archs spread evenly over the predicted-latency range of a pool of
    ``pool`` archs reaching from the space's smallest to its largest arch (``spread_pool``,
    drawn with ``seed``; sorted by latency, ties by hash).

    Arch i sits nearest latency ``low + van_der_corput(i + 1) * (high - low)`` of the pool
    (1/2, 1/4, 3/4, 1/8, ... of the range; the nearest free one when taken), so every
    prefix is spread over the range and a larger ``count`` extends a smaller one: a
    second rank call with more archs keeps the archs (and the standalone trainings) of
    the first.
    """
    if count < 1:
        return []
    rng = np.random.default_rng(seed)
    unique: dict[str, Arch] = {}
    for arch in spread_pool(space, pool, rng):
        unique.setdefault(space.arch_string(arch), arch)
    if len(unique) < count:
        raise ValueError(f"{pool} draws hold only {len(unique)} distinct archs, fewer than {count}: "
                         "raise rank.pool or lower rank.num_archs")
    ranked = sorted(unique.values(), key=lambda a: (latency(a), a.hash))
    latencies = [latency(a) for a in ranked]
    low, high = latencies[0], latencies[-1]
    taken: list[int] = []
    for i in range(count):
        target = low + van_der_corput(i + 1) * (high - low)
        free = [j for j in range(len(ranked)) if j not in taken]
        taken.append(min(free, key=lambda j: (abs(latencies[j] - target), j)))
    return [ranked[j] for j in taken]


def spread_pool(space: SearchSpace, count: int, rng: np.random.Generator) -> list[Arch]:
    """``count`` random archs from the space's smallest to its largest (``tilted_arch``:
    uniform archs alone crowd the middle of the latency range, where archs are rarely
    told apart even by standalone training). A space that does not order its options by
    size (``options_by_size`` False) has no extremes and gets uniform draws.
    """
    if not space.options_by_size:
        return [space.random_arch(rng) for _ in range(count)]
    return [tilted_arch(space, rng) for _ in range(count)]


def van_der_corput(n: int) -> float:
    """The n-th point of the base-2 van der Corput sequence (n >= 1): 1/2, 1/4, 3/4, 1/8, ..."""
    value, denominator = 0.0, 1.0
    while n:
        denominator *= 2
        n, bit = divmod(n, 2)
        value += bit / denominator
    return value


def archs_to_rank(
    space: SearchSpace, latency: Callable[[Arch], float], *, num_archs: int, top: Sequence[Mapping[str, Any]],
    top_archs: int, seed: int, pool: int = 400,
) -> list[tuple[Arch, str]]:
    """``num_archs`` ``(arch, origin)`` pairs: the search's first ``top_archs`` entries of
    ``top`` (origin ``"top"``), filled up with stratified archs (``"stratified"``), one per
    network (``arch_string``: archs differing only in a skipped layer's choices
    train alike; a stratified arch already in the top keeps its "top" origin)."""
    if num_archs < 2:
        raise ValueError(f"rank.num_archs={num_archs}: a ranking needs at least 2 archs")
    if not 0 <= top_archs <= num_archs:
        raise ValueError(f"rank.top_archs={top_archs} must lie between 0 and rank.num_archs={num_archs} (the search's "
                         f"top archs are part of the num_archs): lower rank.top_archs or raise rank.num_archs")
    chosen: dict[str, tuple[Arch, str]] = {}
    for entry in list(top)[:top_archs]:
        arch = space.arch_from_json_dict(entry)
        chosen.setdefault(space.arch_string(arch), (arch, "top"))
    for arch in stratified_archs(space, latency, num_archs, seed=seed, pool=pool):  # nested: fills up in order
        if len(chosen) == num_archs:
            break
        chosen.setdefault(space.arch_string(arch), (arch, "stratified"))
    return list(chosen.values())
