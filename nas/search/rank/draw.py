"""Which archs ``melnas-rank`` compares: spread over the space by predicted latency,
plus the search's own top archs.

The spread part depends only on the space, the latency table and ``seed``: two searches
of the same space on the same machine (one latency table file) draw the same archs, so
their standalone trainings are shared through the cache and only the supernet scores
differ between search options.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from search_spaces.base import Arch, SearchSpace


def stratified_archs(
    space: SearchSpace, latency: Callable[[Arch], float], count: int, *, seed: int, pool: int = 20
) -> list[Arch]:
    """``count`` distinct archs, one from each of ``count`` equal-size latency strata of a
    pool of ``pool * count`` uniform random archs (sorted by predicted latency, ties by hash)."""
    if count < 1:
        return []
    if pool < 1:
        raise ValueError(f"rank.pool={pool} (need >= 1)")
    rng = np.random.default_rng(seed)
    unique: dict[str, Arch] = {}
    for _ in range(pool * count):
        arch = space.random_arch(rng)
        unique.setdefault(arch.hash, arch)
    if len(unique) < count:
        raise ValueError(f"the space holds fewer than {count} distinct archs in {pool * count} draws: lower rank.num_archs")
    ranked = sorted(unique.values(), key=lambda a: (latency(a), a.hash))
    strata = np.array_split(np.arange(len(ranked)), count)
    return [ranked[int(rng.choice(stratum))] for stratum in strata]


def archs_to_rank(
    space: SearchSpace, latency: Callable[[Arch], float], *, num_archs: int, top: Sequence[Mapping[str, Any]],
    top_archs: int, seed: int, pool: int = 20,
) -> list[tuple[Arch, str]]:
    """``(arch, origin)`` pairs: the search's first ``top_archs`` entries of ``top``
    (origin ``"top"``), then ``num_archs - top_archs`` stratified archs (``"stratified"``),
    distinct by hash (a stratified arch already in the top keeps its "top" origin)."""
    if num_archs < 2 or not 0 <= top_archs <= num_archs:
        raise ValueError(f"rank.num_archs={num_archs} (need >= 2) and 0 <= rank.top_archs={top_archs} <= num_archs")
    chosen: dict[str, tuple[Arch, str]] = {}
    for entry in list(top)[:top_archs]:
        arch = space.arch_from_json_dict(entry)
        chosen.setdefault(arch.hash, (arch, "top"))
    for arch in stratified_archs(space, latency, num_archs - top_archs, seed=seed, pool=pool):
        chosen.setdefault(arch.hash, (arch, "stratified"))
    return list(chosen.values())
