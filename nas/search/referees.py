"""Referees: the supernets of other finished searches of the same space and data, whose
scores are averaged with a search's own (``trainer.final.referees``, ``rank.referees``).

Why: every supernet ranks archs with a bias of its own training. The sandwich rule's supernet
overrates the largest archs; a one-arch ENAS supernet (``trainer.sampling=controller``)
overrates the archs its own controller favoured. Neither bias carries over to the other
search's archs, so the mean score of the two kinds ranks better than either (docs/rank.md,
"Referees": 0.44 -> 0.59 Kendall tau over 20 archs with 5 referees).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from nas.errors import MelnasError
from nas.io.checkpoint import load_checkpoint, preserved_rng_state
from nas.search.few_shot import FewShotSettings, build_supernet
from nas.search.resume import CHECKPOINT, check_same_data
from nas.search.scoring import ArchScorer, Batch
from search_spaces.base import Arch, SearchSpace

@dataclass(frozen=True)
class Referee:
    """A finished search whose supernet scores archs: what loading it takes."""

    run_dir: Path
    space_config: Mapping[str, Any]
    data_cache_dir: str
    few_shot: FewShotSettings


def check_referees(referees: Sequence[Referee], *, space_config: Mapping[str, Any], data_cache_dir: str,
                   split_identity: str, setting: str, run_dir: Path) -> None:
    """Refuse, before anything is trained or scored, a referee that cannot judge these archs:
    an unfinished search, one of another space, or one trained on another data cache or on
    another preparation of this one (``split_identity``: other splits); and one that is the
    run itself (``run_dir``) or listed twice, which would count one supernet twice in the mean."""
    seen = {run_dir.resolve()}
    for referee in referees:
        if referee.run_dir.resolve() in seen:
            what = "the run itself" if referee.run_dir.resolve() == run_dir.resolve() else "listed twice"
            raise MelnasError(f"{setting}: {referee.run_dir} is {what}: its supernet would count twice in the mean "
                              "score; list each referee once, and not the run being scored")
        seen.add(referee.run_dir.resolve())
        for needed in (referee.run_dir / CHECKPOINT, referee.run_dir / "top_archs.json"):
            if not needed.is_file():
                raise MelnasError(f"{setting}: {needed} is missing: a referee must be a finished melnas-search "
                                  "run directory (let it finish, or resume it with resume=true)")
        theirs = dict(referee.space_config)
        changed = sorted(k for k in set(space_config) | set(theirs) if space_config.get(k) != theirs.get(k))
        if changed:
            details = "; ".join(f"{k}: {theirs.get(k)!r} there, {space_config.get(k)!r} here" for k in changed)
            raise MelnasError(f"{setting}: {referee.run_dir} searched with another search_space ({details}): "
                              "a referee must search the same space")
        if Path(referee.data_cache_dir).resolve() != Path(data_cache_dir).resolve():
            raise MelnasError(f"{setting}: {referee.run_dir} searched with data.cache_dir {referee.data_cache_dir}, "
                              f"this run with {data_cache_dir}: a referee must be trained on the same data")
        check_same_data(load_checkpoint(referee.run_dir / CHECKPOINT), split_identity, run_dir=referee.run_dir,
                        cache_dir=data_cache_dir, setting=setting,
                        remedy="a referee must be trained on the same splits: run its search again on this data")


def load_supernet(checkpoint: Path, few_shot: FewShotSettings, space: SearchSpace, *, num_classes: int,
                  input_shape: Sequence[int], device: torch.device) -> nn.Module:
    """The supernet a search saved in ``checkpoint`` (weights only)."""
    supernet = build_supernet(space, few_shot, num_classes=num_classes, input_shape=input_shape)
    try:
        supernet.load_state_dict(load_checkpoint(checkpoint)["supernet"])
    except RuntimeError as error:
        raise MelnasError(f"{checkpoint} does not hold a supernet of this space and data ({num_classes} classes, "
                          f"input {tuple(input_shape)}): {str(error).splitlines()[0]}") from error
    return supernet.to(device)


def load_referees(referees: Sequence[Referee], space: SearchSpace, *, num_classes: int, input_shape: Sequence[int],
                  device: torch.device) -> list[nn.Module]:
    """The referees' supernets. Building modules draws their initial weights from torch's
    global generator, which also drives the search's dropout: put it back afterwards, so a
    search with referees trains exactly as one without."""
    with preserved_rng_state():
        return [load_supernet(referee.run_dir / CHECKPOINT, referee.few_shot, space, num_classes=num_classes,
                              input_shape=input_shape, device=device) for referee in referees]


class MeanScorer:
    """The mean accuracy of several ``ArchScorer``s (a search's own and its referees')."""

    def __init__(self, scorers: Sequence[ArchScorer]) -> None:
        if not scorers:
            raise ValueError("MeanScorer needs at least one scorer")
        self.scorers = list(scorers)
        self._stack = ExitStack()

    def __enter__(self) -> "MeanScorer":
        with ExitStack() as stack:  # a scorer failing to enter restores the ones entered before it
            for scorer in self.scorers:
                stack.enter_context(scorer)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def accuracies(self, archs: Sequence[Arch], batches: Sequence[Batch]) -> list[float]:
        """Each arch's accuracy on ``batches``, averaged over the scorers."""
        return [mean(one) for one in zip(*(scorer.accuracies(archs, batches) for scorer in self.scorers))]
