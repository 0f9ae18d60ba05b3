"""One supernet for every controller of a seed: a search that follows another's shared weights.

Unless ``trainer.sampling=controller``, which archs train the shared weights does not depend
on the controller (sandwich, uniform and fair draw from their own seeded stream), and the
controller and final phases leave the supernet as they found it: the ENAS and the random
search of one seed train bit-identical supernets. So a matched-budget comparison (``melnas-demo``,
``melnas-study``) need train them only once:

- the first search, with ``trainer.keep_epoch_supernets=true``, writes after each epoch's
  shared training ``checkpoints/supernet_epoch_<e>.pt``: the supernet, the global random
  state and that epoch's training figures;
- the others, with ``trainer.supernet_from=<that run>``, load those instead of training:
  their controller and final phases then see exactly the weights they would have trained
  themselves, at about a fifth of the cost (a random search of ``make search``: 40 s
  instead of ~205 s).

A follower refuses a run whose training settings differ from its own (``TRAINING_FREE``
lists the settings that only steer the controller, the reward or the final pick), that
trained on other splits, or that has not written the epoch it needs yet.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from nas.errors import MelnasError
from nas.io.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from nas.search.phases import SearchContext
from nas.search.resume import CHECKPOINT, check_same_data

SNAPSHOT_FORMAT = 1
# Flattened config keys (or their prefixes, ending in ".") a follower may set otherwise than
# the run it follows: they act after the shared training (the controller phase's scoring
# restores the batchnorm buffers it touches). nas/search/resume.py's resume-free keys
# (threads, device, trainer.amp, progress) are never in an identity: they may differ as in
# a resume, and then the follower sees the weights the followed run's device and threads made.
TRAINING_FREE = ("controller.", "reward.", "latency_table.", "trainer.final.", "trainer.controller_steps",
                 "trainer.archs_per_step", "trainer.controller_warmup", "trainer.val_batch_size", "trainer.bn_mode",
                 "trainer.bn_recalibration_batches", "trainer.supernet_from")
# ...except under trainer.sandwich_draw=budget, whose training archs are drawn near the
# reward's target as the latency table predicts them.
SHAPED_BY_BUDGET = ("reward.", "latency_table.")


def snapshot_path(run_dir: str | Path, epoch: int) -> Path:
    """The shared weights after epoch ``epoch`` (0-based) of the search in ``run_dir``."""
    return Path(run_dir) / CHECKPOINT.parent / f"supernet_epoch_{epoch + 1:03d}.pt"


def training_identity(identity: Mapping[str, Any]) -> dict[str, Any]:
    """A run identity (``nas.search.resume.identity_of``) minus what does not shape the supernet."""
    budget = identity.get("trainer.sampling") == "sandwich" and identity.get("trainer.sandwich_draw") == "budget"
    free_keys = [key for key in TRAINING_FREE if not (budget and key in SHAPED_BY_BUDGET)]
    return {k: v for k, v in identity.items()
            if not any(k == free or (free.endswith(".") and k.startswith(free)) for free in free_keys)}


def keep_epoch_supernet(ctx: SearchContext, run_dir: Path, epoch: int, figures: Mapping[str, float],
                        identity: Mapping[str, Any]) -> None:
    """Write the snapshot a follower of ``run_dir`` loads for ``epoch`` (right after its training)."""
    if not ctx.world.is_writer:
        return
    save_checkpoint(snapshot_path(run_dir, epoch), {
        "format": SNAPSHOT_FORMAT,
        "identity": dict(identity),
        "split_identity": ctx.split_identity,
        "supernet": ctx.supernet.state_dict(),
        "rng": capture_rng_state(),
        "train_step": ctx.state.train_step,
        "figures": dict(figures),
    })


class SupernetSource:
    """The run a search follows (``trainer.supernet_from``): its shared weights, epoch by epoch."""

    def __init__(self, run_dir: str | Path, *, identity: Mapping[str, Any], split_identity: str,
                 cache_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._identity = training_identity(identity)
        self._split_identity = split_identity
        self._cache_dir = cache_dir
        if not (self.run_dir / CHECKPOINT.parent).is_dir():
            raise MelnasError(f"trainer.supernet_from={self.run_dir}: no search there (no checkpoints/ folder); "
                              "name the run directory of a search started with trainer.keep_epoch_supernets=true")

    def adopt_epoch(self, ctx: SearchContext, epoch: int) -> dict[str, float]:
        """Load the followed run's weights after ``epoch`` into ``ctx`` in place of training them.

        Returns the epoch's training figures (the followed run's loss and accuracy; ``shared_s``
        the time this load took, ``shared_trained_s`` the time the training took there)."""
        start = time.perf_counter()
        path = snapshot_path(self.run_dir, epoch)
        if not path.is_file():
            raise MelnasError(f"trainer.supernet_from={self.run_dir}: it has no shared weights after epoch {epoch + 1} "
                              f"({path}). {self._remedy(epoch)}")
        snapshot = load_checkpoint(path)
        self._check(snapshot, path)
        ctx.supernet.load_state_dict(snapshot["supernet"])
        restore_rng_state(snapshot["rng"])
        ctx.state.train_step = int(snapshot["train_step"])
        figures = dict(snapshot["figures"])
        return {"train_loss": figures["train_loss"], "train_accuracy": figures["train_accuracy"],
                "shared_s": time.perf_counter() - start, "shared_trained_s": figures["shared_s"]}

    def _remedy(self, epoch: int) -> str:
        last = self.run_dir / CHECKPOINT
        done = int(load_checkpoint(last)["state"]["epoch"]) if last.is_file() else 0
        if done > epoch:
            return (f"It ran that epoch without trainer.keep_epoch_supernets=true: follow a search started with it, or "
                    "drop trainer.supernet_from (in melnas-demo / melnas-study: demo.share_supernet=false / "
                    "study.share_supernet=false) to train this search's supernet itself")
        return ("Run (or resume) that search to its end first, with trainer.keep_epoch_supernets=true; or drop "
                "trainer.supernet_from to train this search's supernet itself")

    def _check(self, snapshot: Mapping[str, Any], path: Path) -> None:
        if snapshot.get("format") != SNAPSHOT_FORMAT:
            raise MelnasError(f"{path} has snapshot format {snapshot.get('format')}, expected {SNAPSHOT_FORMAT}: "
                              "it was written by another version of melnas; run that search again")
        check_same_data(snapshot, self._split_identity, run_dir=self.run_dir, cache_dir=self._cache_dir,
                        setting="trainer.supernet_from",
                        remedy="drop trainer.supernet_from, or follow a search of the data as it is now")
        theirs = training_identity(snapshot["identity"])
        changed = sorted(k for k in set(theirs) | set(self._identity) if theirs.get(k) != self._identity.get(k))
        if changed:
            details = "; ".join(f"{k}: {theirs.get(k)!r} there, {self._identity.get(k)!r} here" for k in changed[:12])
            raise MelnasError(
                f"trainer.supernet_from={self.run_dir} trained its supernet with other settings than this search "
                f"would ({details}). Only the controller, the reward and the latency table (not under "
                "trainer.sandwich_draw=budget), the controller phase "
                "(trainer.controller_steps, archs_per_step, controller_warmup, val_batch_size, bn_mode, "
                "bn_recalibration_batches) and trainer.final may differ; use the same settings, or drop "
                "trainer.supernet_from")


def followed_source(ctx: SearchContext, *, identity: Mapping[str, Any], cache_dir: str | Path) -> SupernetSource | None:
    """The run ``trainer.supernet_from`` names, while this search has epochs left to take from
    it (a finished follower re-picks without it)."""
    settings = ctx.settings
    if settings.supernet_from is None or ctx.state.epoch >= settings.epochs:
        return None
    source = SupernetSource(settings.supernet_from, identity=identity, split_identity=ctx.split_identity,
                            cache_dir=cache_dir)
    ctx.tracker.info(f"the shared weights of every epoch come from {source.run_dir} (trainer.supernet_from): "
                     "this search trains none itself")
    return source
