"""Referees: the supernets of other finished searches of the same space and data, whose
scores are averaged with a search's own (``trainer.final.referees``, ``rank.referees``).

Why: every supernet ranks archs with a bias of its own training. The sandwich rule's
overrates the largest archs; a one-arch ENAS supernet (``trainer.sampling=controller``)
overrates the archs its own controller favoured. Neither bias carries over to the other
search's archs, so the mean score of the two kinds ranks better than either (README,
"Does the supernet rank?": 0.44 -> 0.59 Kendall tau over 20 archs with 5 referees).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any, Mapping, Sequence

import torch

from nas.errors import MelnasError
from nas.io.checkpoint import load_checkpoint
from nas.search.few_shot import FewShotSettings, build_supernet
from nas.search.scoring import ArchScorer, Batch
from search_spaces.base import Arch, SearchSpace, Supernet

@dataclass(frozen=True)
class Referee:
    """A finished search whose supernet scores archs: what loading it takes."""

    run_dir: Path
    checkpoint: Path  # its supernet: <run_dir>/checkpoints/last.pt
    space_config: Mapping[str, Any]
    data_cache_dir: str
    few_shot: FewShotSettings


def check_referees(referees: Sequence[Referee], *, space_config: Mapping[str, Any], data_cache_dir: str,
                   setting: str) -> None:
    """Refuse, before anything is trained or scored, a referee that cannot judge these archs:
    one without a supernet checkpoint, of another space, or trained on other data."""
    for referee in referees:
        if not referee.checkpoint.is_file():
            raise MelnasError(f"{setting}: {referee.checkpoint} is missing: a referee must be a "
                              "finished melnas-search run directory")
        for what, ours, theirs in (("search_space", dict(space_config), dict(referee.space_config)),
                                   ("data.cache_dir", data_cache_dir, referee.data_cache_dir)):
            if ours != theirs:
                raise MelnasError(f"{setting}: {referee.run_dir} searched with {what} {theirs}, this run with "
                                  f"{ours}: a referee must search the same space on the same data")


def load_supernet(checkpoint: Path, few_shot: FewShotSettings, space: SearchSpace, *, num_classes: int,
                  input_shape: Sequence[int], device: torch.device) -> Supernet:
    """The supernet a search saved in ``checkpoint`` (weights only)."""
    supernet = build_supernet(space, few_shot, num_classes=num_classes, input_shape=input_shape)
    supernet.load_state_dict(load_checkpoint(checkpoint)["supernet"])
    return supernet.to(device)


class MeanScorer:
    """The mean accuracy of several ``ArchScorer``s (a search's own and its referees')."""

    def __init__(self, scorers: Sequence[ArchScorer]) -> None:
        if not scorers:
            raise ValueError("MeanScorer needs at least one scorer")
        self.scorers = list(scorers)
        self._stack = ExitStack()

    def __enter__(self) -> "MeanScorer":
        for scorer in self.scorers:
            self._stack.enter_context(scorer)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def accuracies(self, archs: Sequence[Arch], batches: Sequence[Batch]) -> list[float]:
        """Each arch's accuracy on ``batches``, averaged over the scorers."""
        return [mean(one) for one in zip(*(scorer.accuracies(archs, batches) for scorer in self.scorers))]
