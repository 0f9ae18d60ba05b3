"""Which archs train the shared weights at each step of the search (``trainer.sampling``).

- ``controller`` (ENAS): one arch per step, drawn from the controller.
- ``uniform`` (single-path one-shot, Guo et al. 2019; random search with weight sharing,
  Li & Talwalkar 2019): one arch per step, every decision drawn uniformly, whatever the
  controller prefers; the controller still learns from the supernet's scores.
- ``fair`` (strict fairness, FairNAS, Chu et al. 2019): each step trains a group of k
  archs on the same minibatch, gradients summed before one optimizer step; in a group
  every option of every categorical decision appears equally often (k is the least
  common multiple of the decisions' option counts, so a decision of k options takes
  each exactly once). Input choices (skip connections) are drawn uniformly.
- ``sandwich`` (BigNAS, Yu et al. 2020; AttentiveNAS): each step trains the space's
  largest arch on the labels, and its smallest plus ``trainer.sandwich_random`` uniform
  archs on the largest's soft labels (in-place distillation: KL to the detached
  softmax of the largest), again with one optimizer step. The extremes come from
  ``SearchSpace.extreme_arch`` (options listed smallest first). ``trainer.sandwich_draw``
  picks how the random archs are drawn: ``uniform`` per decision (BigNAS), which crowds
  the middle of the size range, or ``tilted`` (``search_spaces.base.tilted_arch``),
  spread from the smallest arch to the largest, so that every size between the two
  extremes is trained (AttentiveNAS's point: sample over the cost range, not the choices),
  or ``budget`` (``band_arch``): uniform archs whose predicted latency lies in
  ``trainer.sandwich_band`` (fractions of the reward's target; 0.8-1.0 by default), the
  archs among which a search under a latency budget picks its winner (AttentiveNAS,
  Wang et al. 2021, trains most the archs at the costs it deploys).
  ``trainer.sandwich_distill=false`` trains every arch of the group on the labels instead
  (the sandwich rule without in-place distillation). ``trainer.sandwich_unsized=uniform``
  lets the extremes draw the space's decisions of no size (``unsized_decisions``:
  mobilenetv3's activations) afresh each step, so that no activation is the teacher's.

``trainer.controller_warmup`` (TuNAS): while the controller is in warm-up (no updates),
the ``controller`` mode draws the training archs uniformly instead of from the untrained
controller. Every draw here comes from a generator seeded by (run seed, epoch), so a
resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from controllers.base import Controller
from nas.runtime import torch_threads
from search_spaces.base import Arch, Categorical, SearchSpace, check_options_by_size, tilted_arch, uniform_values

SAMPLING_MODES = ("controller", "uniform", "fair", "sandwich")
SANDWICH_DRAWS = ("uniform", "tilted", "budget")  # trainer.sandwich_draw
SANDWICH_UNSIZED = ("fixed", "uniform")  # trainer.sandwich_unsized


BAND_TRIES = 256  # uniform draws per arch before band_arch settles for the one nearest the band


@dataclass(frozen=True)
class LatencyBand:
    """Predicted latencies ``[low_ms, high_ms]`` and the predictor that places an arch in them."""

    latency_ms: Callable[[Arch], float]
    low_ms: float
    high_ms: float

    def distance(self, arch: Arch) -> float:
        """0 inside the band, else how many ms the arch's predicted latency lies outside it."""
        ms = self.latency_ms(arch)
        return max(self.low_ms - ms, ms - self.high_ms, 0.0)


def band_arch(space: SearchSpace, rng: np.random.Generator, band: LatencyBand) -> Arch:
    """A uniform arch of the band (rejection sampling: uniform over the band's archs); if
    ``BAND_TRIES`` draws all miss it, the draw nearest to it."""
    nearest, nearest_distance = None, math.inf
    for _ in range(BAND_TRIES):
        arch = space.arch(uniform_values(space.decisions, rng))
        distance = band.distance(arch)
        if distance == 0.0:
            return arch
        if distance < nearest_distance:
            nearest, nearest_distance = arch, distance
    assert nearest is not None
    return nearest


def check_sampling(
    mode: str, sandwich_random: int, sandwich_draw: str = "uniform", sandwich_unsized: str = "fixed",
    sandwich_band: Sequence[float] = (0.8, 1.0),
) -> None:
    if mode not in SAMPLING_MODES:
        raise ValueError(f"trainer.sampling={mode!r} is not one of {', '.join(SAMPLING_MODES)}")
    if sandwich_random < 0:
        raise ValueError(f"trainer.sandwich_random={sandwich_random} (need >= 0)")
    if sandwich_draw not in SANDWICH_DRAWS:
        raise ValueError(f"trainer.sandwich_draw={sandwich_draw!r} is not one of {', '.join(SANDWICH_DRAWS)}")
    if sandwich_unsized not in SANDWICH_UNSIZED:
        raise ValueError(f"trainer.sandwich_unsized={sandwich_unsized!r} is not one of {', '.join(SANDWICH_UNSIZED)}")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sandwich_band)
    if len(sandwich_band) != 2 or not numbers or not 0.0 <= sandwich_band[0] < sandwich_band[1]:
        raise ValueError(f"trainer.sandwich_band={list(sandwich_band)}: give [low, high] fractions of the reward's "
                         "latency target with 0 <= low < high, e.g. [0.8, 1.0]")


def controller_untrained(controller_step: int, warmup_steps: int) -> bool:
    """True while the controller has made no update yet: it skips the first ``warmup_steps``
    controller steps and first updates at step ``warmup_steps + 1``, so after ``controller_step``
    steps it is still untrained when ``0 < warmup_steps`` and ``controller_step <= warmup_steps``."""
    return 0 < warmup_steps and controller_step <= warmup_steps


def check_space_sampling(space: SearchSpace, mode: str) -> None:
    """Refuse, before anything is measured or trained, a sampling mode ``space`` cannot serve."""
    if mode == "sandwich":
        check_options_by_size(space)


def fair_group_size(space: SearchSpace) -> int:
    """k: the least common multiple of the categorical decisions' option counts."""
    sizes = [d.size for d in space.decisions if isinstance(d, Categorical)]
    return math.lcm(*sizes) if sizes else 1


def fair_group(space: SearchSpace, rng: np.random.Generator) -> list[Arch]:
    """k archs in which each option of each categorical decision appears k / size times."""
    k = fair_group_size(space)
    columns = []
    for d in space.decisions:
        if isinstance(d, Categorical):
            slots = np.repeat(np.arange(d.size), k // d.size)
            columns.append([d.options[int(i)] for i in rng.permutation(slots)])
        else:
            columns.append([tuple(int(i) for i in np.flatnonzero(rng.random(d.num_inputs) < 0.5)) for _ in range(k)])
    return [space.arch([column[j] for column in columns]) for j in range(k)]


def sandwich_group(
    space: SearchSpace, rng: np.random.Generator, num_random: int, draw: str = "uniform", unsized: str = "fixed",
    band: LatencyBand | None = None,
) -> list[Arch]:
    """The largest arch first (the teacher), then the smallest, then ``num_random`` random
    ones (``draw``: ``uniform`` per decision, ``tilted`` over the size range, or ``budget``:
    uniform within ``band``).
    ``unsized="uniform"``: the extremes take a uniform draw of the space's unsized decisions."""
    extremes = [space.extreme_arch(largest=True), space.extreme_arch(largest=False)]
    if unsized == "uniform":
        # A whole uniform draw per extreme, of which only the unsized decisions are kept: the
        # draws the README's measurements of this option were made with (same seed, same runs).
        names = [d.name for d in space.decisions]
        extremes = [space.arch({**arch.as_dict(), **{name: value for name, value in zip(names, uniform_values(
            space.decisions, rng)) if name in space.unsized_decisions}}) for arch in extremes]
    if draw == "tilted":
        return extremes + [tilted_arch(space, rng) for _ in range(num_random)]
    if draw == "budget":
        if band is None:
            raise ValueError("trainer.sandwich_draw=budget needs the reward's latency band (a reward with target_ms)")
        return extremes + [band_arch(space, rng, band) for _ in range(num_random)]
    return extremes + [space.arch(uniform_values(space.decisions, rng)) for _ in range(num_random)]


def step_archs(
    space: SearchSpace, controller: Controller, mode: str, *, steps: int, rng: np.random.Generator,
    uniform: bool, sandwich_random: int = 2, sandwich_draw: str = "uniform", sandwich_unsized: str = "fixed",
    band: LatencyBand | None = None,
) -> list[list[Arch]]:
    """The archs of each of ``steps`` shared-weight steps (one list per step).

    ``uniform``: the controller is in warm-up, so ``controller`` mode draws uniformly.
    ``band``: where ``sandwich_draw=budget`` draws the random archs.
    """
    if mode == "fair":
        return [fair_group(space, rng) for _ in range(steps)]
    if mode == "sandwich":
        return [sandwich_group(space, rng, sandwich_random, sandwich_draw, sandwich_unsized, band) for _ in range(steps)]
    if uniform or mode == "uniform":
        return [[space.arch(uniform_values(space.decisions, rng))] for _ in range(steps)]
    with torch.no_grad(), torch_threads(controller.threads):
        return [[space.arch(sample.values)] for sample in controller.sample(steps)]


def group_forward(supernet: Callable[[Tensor, Arch], Tensor], archs: Sequence[Arch]) -> Callable[[Tensor], Tensor]:
    """``x -> logits [k, B, classes]`` of every arch of a group (one graph, one backward)."""
    return lambda x: torch.stack([supernet(x, arch) for arch in archs])


def group_loss(mode: str, distill: bool = True, group_size: int | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss of a group's stacked logits ``[k, B, classes]``: the mean over its archs.

    ``sandwich`` with ``distill``: cross-entropy for the first (largest) arch, KL divergence
    to its detached softmax for the others (in-place distillation); with ``group_size``,
    the k archs are k / group_size sandwich groups one after the other (few-shot: one per
    sub-supernet), each distilled from its own first arch. Otherwise cross-entropy each.
    """

    def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
        return torch.stack([F.cross_entropy(one, y) for one in logits]).mean()

    def distilled(logits: Tensor, y: Tensor) -> Tensor:
        losses = []
        for group in logits.split(group_size or len(logits)):
            teacher = F.softmax(group[0].detach(), dim=1)
            losses.append(F.cross_entropy(group[0], y))
            losses += [F.kl_div(F.log_softmax(student, dim=1), teacher, reduction="batchmean") for student in group[1:]]
        return torch.stack(losses).mean()

    return distilled if mode == "sandwich" and distill else cross_entropy
