"""The referee searches a search trains for itself (``trainer.final.referee_searches: N``):
its final phase then picks by the mean score of its own supernet and theirs
(``nas/search/referees.py``).

Why: every supernet ranks archs with a bias of its own training. The sandwich rule's
supernet overrates the largest archs' choices; a one-arch ENAS supernet
(``trainer.sampling=controller``) overrates the archs its own controller favoured, but
another one-arch search's favourites are not its own. Averaged, they rank archs
better than either alone (docs/rank.md).

Referee k (1..N) of a search of seed s is the search composed with the same overrides
and ``controller=enas_lstm trainer.sampling=controller seed=s+k``: it depends neither on
the search's controller nor on its sampling, so the searches of one seed (ENAS, random
search and evolution in the demo and in ``melnas-study``) share their referees, and it
never repeats the search itself. Each is kept in ``trainer.final.referee_dir`` under a
digest of its config and of the data's splits: trained once, continued where it stopped
after an interruption, and reused by every later search that needs the same one.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig, open_dict

from experiments.cli import HydraRun
from experiments.compose import compose_step, job_config, save_step_config
from experiments.settings import plain
from nas.data.dataset import open_prepared
from nas.data.prepare import prepare_for_run
from nas.distributed import world_from_env
from nas.io.lock import file_lock
from nas.search.loop import SearchOutcome
from nas.search.resume import CHECKPOINT, identity_of
from nas.search.tracking import LOGGER

REFEREE_CONTROLLER = "enas_lstm"
# Overrides of the search that a referee replaces (its controller, sampling, seed), that
# would make it train referees of its own, or that are the search's alone (resume; the
# simulated kill ``trainer.stop_after_epochs``: a referee always runs to its end; the
# supernet a seed's searches share, which a referee, with its own sampling, does not).
REPLACED = ("controller=", "controller.", "seed=", "resume=", "trainer.sampling=", "trainer.final.referee",
            "trainer.stop_after_epochs=", "trainer.supernet_from=", "trainer.keep_epoch_supernets=",
            "hydra.", "hydra/")

RunSearch = Callable[[DictConfig, HydraRun], SearchOutcome]


def referee_overrides(overrides: Sequence[str], seed: int) -> list[str]:
    """The overrides of the referee of ``seed``: the search's own, its controller, sampling
    and seed replaced, and no referees of its own."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith(REPLACED)]
    return [*kept, f"controller={REFEREE_CONTROLLER}", "trainer.sampling=controller", f"seed={seed}",
            "trainer.final.referee_searches=0", "trainer.final.referees=[]"]


def referee_run_dir(cfg: DictConfig, split_identity: str, root: Path) -> Path:
    """Where the referee ``cfg`` (composed) is kept: named by its seed and a digest of its
    settings (those a resume may not change) and of the splits it trains on."""
    identity = identity_of(plain(job_config(cfg)))
    digest = hashlib.sha256(json.dumps([identity, split_identity], sort_keys=True, default=str).encode()).hexdigest()
    return root / f"seed_{cfg.seed}-{digest[:12]}"


def train_referee_searches(cfg: DictConfig, overrides: Sequence[str], run_search: RunSearch) -> list[str]:
    """The run directories of the referee searches ``cfg`` (a search's job config) asks
    for, each trained first where it is missing or unfinished (``run_search``: melnas-search's
    own function, passed in to keep the modules apart)."""
    final = cfg.trainer.final
    count, root = int(final.referee_searches), Path(final.referee_dir).resolve()
    if count == 0:
        return []
    data = plain(cfg.data)
    prepare_for_run(data, progress=bool(cfg.trainer.progress))  # reused when up to date
    split_identity = open_prepared(data["cache_dir"]).split_identity
    run_dirs = []
    for k in range(1, count + 1):
        referee = compose_step("search", referee_overrides(overrides, int(cfg.seed) + k), cfg.data)
        run_dir = referee_run_dir(referee, split_identity, root)
        _train_once(referee, run_dir, f"referee {k}/{count}", run_search)
        run_dirs.append(str(run_dir))
    return run_dirs


def _train_once(cfg: DictConfig, run_dir: Path, label: str, run_search: RunSearch) -> None:
    """Train the referee ``cfg`` into ``run_dir`` unless it is there already; continue it
    if it stopped part-way. Searches started together (a study's jobs, a sweep) that need
    the same referee wait for the first to train it; under torchrun every rank takes part
    in training it, so no lock is taken there."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    world = world_from_env()
    with nullcontext() if world.distributed else file_lock(run_dir.parent / f"{run_dir.name}.lock"):
        if (run_dir / "top_archs.json").is_file():
            LOGGER.info(f"{label}: the one-arch ENAS search of seed {cfg.seed} is done already: {run_dir}")
            return
        resume = (run_dir / CHECKPOINT).is_file()
        with open_dict(cfg):
            cfg.resume = resume
        LOGGER.info(f"{label}: {'continuing' if resume else 'training'} the one-arch ENAS search of seed "
                    f"{cfg.seed} (trainer.final.referee_searches) in {run_dir}")
        if world.is_writer:
            save_step_config(run_dir, cfg, tuple(cfg.hydra.overrides.task))
        outcome = run_search(job_config(cfg), HydraRun.composed(cfg, run_dir))
        if not outcome.finished:
            raise RuntimeError(f"the referee search in {run_dir} stopped before its end")
