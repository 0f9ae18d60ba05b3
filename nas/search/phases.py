"""The three phases of an ENAS search (Pham et al. 2018), on an assembled ``SearchContext``.

1. ``train_shared_epoch``: one pass over the train split; every minibatch trains the
   supernet along a freshly sampled arch, or a group of archs (``trainer.sampling``,
   ``nas/search/sampling.py``); no gradient reaches the controller.
2. ``controller_phase``: K controller steps; each samples M archs, scores them on one
   validation minibatch with the shared weights, turns accuracy and predicted latency
   into rewards and calls ``controller.update``.
3. ``final_phase``: candidates from the controller, each scored on the whole
   validation split (with ``trainer.final.referees``: the mean score of the supernet and
   the referees' supernets); the top k by reward are the result of the search.

Every random draw here comes from checkpointed state: the controller's own generator,
torch's global generator (dropout, loader seeds) and loaders seeded from the run seed
and the epoch (``derive_seed``), so a resumed run repeats an uninterrupted one exactly.

Under torchrun (``ctx.world``, nas/distributed.py) every rank trains the same sampled arch
(or, with ``trainer.ddp_archs=per_rank``, its own one) on its shard of each train batch
(``trainer.batch_size`` stays the global batch) with gradients averaged over the ranks, and the controller and final phases split their
archs over the ranks and gather the scores, so every rank updates its controller with
the same rewards.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from controllers.base import Controller, Sample
from nas.distributed import SINGLE, World, average_buffers, average_gradients, gather, sum_over_ranks
from nas.search.few_shot import FewShotSupernet, per_option
from nas.search.referees import MeanScorer
from nas.search.reward import Reward
from nas.search.refit import first_examples
from nas.search.sampling import LatencyBand, controller_untrained, group_forward, group_loss, step_archs
from nas.search.scoring import ArchScorer, Batch, LatencyLookup
from nas.search.tracking import RunTracker
from nas.evaluate.accuracy import count_correct
from nas.runtime import torch_threads
from nas.search.settings import TrainerSettings
from nas.train.amp import FP32, MixedPrecision
from nas.train.loop import train_step
from search_spaces.base import Arch, Categorical, SearchSpace, Supernet

LoaderFactory = Callable[..., Any]  # make_loader bound to the prepared data


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 31-bit seed for one random stream (``derive_seed(seed, "train", epoch)``)."""
    words = [int(seed)] + [k if isinstance(k, int) else int.from_bytes(k.encode(), "little") for k in keys]
    return int(np.random.SeedSequence(words).generate_state(1)[0] >> 1)


@dataclass
class SearchState:
    """Counters and results that a checkpoint carries besides the modules."""

    epoch: int = 0  # completed epochs
    train_step: int = 0  # shared-weight minibatches done
    controller_step: int = 0  # controller steps done (warm-up steps included)
    best: list[dict[str, Any]] = field(default_factory=list)  # best scored archs so far
    history: list[dict[str, float]] = field(default_factory=list)  # one summary per epoch

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("epoch", "train_step", "controller_step", "best", "history")}


@dataclass
class SearchContext:
    """Everything the phases act on; assembled by ``nas.search.loop.run_search``."""

    space: SearchSpace
    supernet: Supernet
    controller: Controller
    controller_name: str
    reward: Reward  # (accuracy, latency ms) -> reward; its target_ms places sandwich_draw=budget's band
    latency: LatencyLookup
    make_loader: LoaderFactory  # make_loader(split, *, batch_size, shuffle, seed, drop_last)
    steps_per_epoch: int  # shared-weight minibatches per epoch (the train split, last partial batch dropped)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    tracker: RunTracker
    device: torch.device
    settings: TrainerSettings
    seed: int
    split_identity: str  # PreparedData.split_identity of the data it trains on, kept in the checkpoint
    state: SearchState = field(default_factory=SearchState)
    world: World = SINGLE  # the processes of a torchrun run; rank 0 alone writes
    amp: MixedPrecision = FP32  # the shared-weight step's precision (trainer.amp)
    # trainer.final.referees' supernets, loaded when the final phase needs them (nas/search/referees.py)
    referee_supernets: Callable[[], list[nn.Module]] = list

    def to_device(self, batch: Batch) -> Batch:
        x, y = batch
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


# ---- phase 1: shared weights ------------------------------------------------------------


def sandwich_band(ctx: SearchContext) -> LatencyBand | None:
    """``trainer.sandwich_band`` in ms of the reward's target, where ``sandwich_draw=budget`` draws."""
    if ctx.settings.sandwich_draw != "budget" or ctx.reward.target_ms is None:  # no target: refused at setup
        return None
    low, high = ctx.settings.sandwich_band
    return LatencyBand(ctx.latency, low * ctx.reward.target_ms, high * ctx.reward.target_ms)


def train_shared_epoch(ctx: SearchContext, epoch: int) -> dict[str, float]:
    """One pass over the train split; returns mean loss, accuracy and the time taken."""
    start = time.perf_counter()
    s = ctx.settings
    loader = ctx.make_loader(
        "train", batch_size=s.batch_size // ctx.world.size, shuffle=True, seed=derive_seed(ctx.seed, "train", epoch),
        drop_last=True, shard=ctx.world,
    )
    sync = (lambda: average_gradients(ctx.supernet.parameters(), ctx.world)) if ctx.world.distributed else None
    # Every rank draws the same archs (synced RNG and controller); with ddp_archs=per_rank
    # each draws world-size times as many and trains its own share of them.
    per_rank = s.ddp_archs == "per_rank" and ctx.world.distributed
    groups = step_archs(
        ctx.space, ctx.controller, s.sampling, steps=ctx.steps_per_epoch * (ctx.world.size if per_rank else 1),
        rng=np.random.default_rng(derive_seed(ctx.seed, "sampling", epoch)),
        uniform=controller_untrained(ctx.state.controller_step, s.warmup_steps),
        sandwich_random=s.sandwich_random, sandwich_draw=s.sandwich_draw, sandwich_unsized=s.sandwich_unsized,
        band=sandwich_band(ctx),
    )
    group_size = None
    if isinstance(ctx.supernet, FewShotSupernet) and bool(ctx.supernet.is_split) and s.sampling == "sandwich":
        group_size = len(groups[0])  # each sub-supernet its own sandwich group
        groups = [per_option(ctx.space, ctx.supernet.decision, group) for group in groups]
    if per_rank:
        groups = ctx.world.mine(groups)
    augment = s.spec_augment.build()
    ctx.supernet.train()
    loss_sum = correct = seen = 0.0
    with ctx.tracker.bar(ctx.steps_per_epoch, f"epoch {epoch + 1} shared") as bar:
        for group, batch in zip(groups, loader):
            x, y = ctx.to_device(batch)
            if augment is not None:
                x = augment(x)
            if len(group) == 1:
                forward, loss_fn = (lambda x, arch=group[0]: ctx.supernet(x, arch)), F.cross_entropy
            else:
                forward, loss_fn = group_forward(ctx.supernet, group), group_loss(s.sampling, s.sandwich_distill, group_size)
            loss, logits = train_step(
                ctx.supernet, x, y, loss_fn=loss_fn, optimizer=ctx.optimizer, scheduler=ctx.scheduler,
                grad_clip_norm=s.grad_clip, forward=forward, grad_sync=sync, amp=ctx.amp,
            )
            logits = logits if len(group) == 1 else logits[0]  # a group reports its first arch
            ctx.state.train_step += 1
            batch_correct = float(count_correct(logits, y))
            loss_sum += float(loss.detach()) * len(y)
            correct += batch_correct
            seen += len(y)
            ctx.tracker.scalars(
                {"train/loss": float(loss.detach()), "train/accuracy": batch_correct / len(y),
                 "train/lr": ctx.optimizer.param_groups[0]["lr"]},
                ctx.state.train_step,
            )
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            bar.update()
    loss_sum, correct, seen = sum_over_ranks([loss_sum, correct, seen], ctx.world, ctx.device)
    average_buffers(ctx.supernet, ctx.world)
    return {"train_loss": loss_sum / seen, "train_accuracy": correct / seen, "shared_s": time.perf_counter() - start}


# ---- phase 2: controller ----------------------------------------------------------------


def cycle_batches(ctx: SearchContext, split: str, *, batch_size: int, tag: str) -> Iterator[Batch]:
    """Endless shuffled minibatches of ``split``; pass p is shuffled with seed (run, tag, p)."""
    rounds = 0
    while True:
        loader = ctx.make_loader(
            split, batch_size=batch_size, shuffle=True, seed=derive_seed(ctx.seed, tag, rounds), drop_last=False
        )
        for batch in loader:
            yield ctx.to_device(batch)
        rounds += 1


def recalibration_batches(ctx: SearchContext, epoch: int) -> list[Batch]:
    """The train batches every arch of one phase re-estimates its BN statistics on."""
    stream = cycle_batches(ctx, "train", batch_size=ctx.settings.batch_size, tag=f"recalibrate-{epoch}")
    return [next(stream) for _ in range(ctx.settings.bn_recalibration_batches)]


def controller_phase(ctx: SearchContext, epoch: int) -> dict[str, float]:
    """K controller steps of M archs each; returns means over the phase and the time taken.

    TensorBoard's x axis is the shared-weight step for every curve: controller step k
    of this epoch is drawn inside the epoch's span of shared steps, so the purge of a
    resumed run (every event after the checkpoint's step) removes exactly the lost ones.
    """
    start = time.perf_counter()
    s = ctx.settings
    warmup_steps = s.warmup_steps
    val_stream = cycle_batches(ctx, "val", batch_size=s.val_batch_size, tag=f"controller-{epoch}")
    recal = recalibration_batches(ctx, epoch) if s.bn_mode == "recalibrate" else []
    epoch_start = ctx.state.train_step - ctx.steps_per_epoch
    scored: list[dict[str, Any]] = []
    entropies: list[float] = []
    update_stats: dict[str, list[float]] = {}
    with ArchScorer(ctx.supernet, bn_mode=s.bn_mode, recalibration_batches=recal) as scorer, \
            ctx.tracker.bar(s.controller_steps, f"epoch {epoch + 1} controller") as bar:
        for k in range(s.controller_steps):
            ctx.state.controller_step += 1
            bar.update()
            if ctx.state.controller_step <= warmup_steps:
                continue
            batch = next(val_stream)
            with torch_threads(ctx.controller.threads):
                samples = ctx.controller.sample(s.archs_per_step)
            records = gather(score_samples(ctx, scorer, ctx.world.mine(samples), [batch],
                                           phase="controller", epoch=epoch), ctx.world)
            with torch_threads(ctx.controller.threads):
                stats = ctx.controller.update(samples, [r["reward"] for r in records])
            ctx.tracker.log_scored(records)
            remember_best(ctx, records)
            scored += records
            entropies += [sample.entropy for sample in samples]
            for key, value in stats.items():
                update_stats.setdefault(key, []).append(float(value))
            step_summary = scored_summary(records, [sample.entropy for sample in samples])
            ctx.tracker.scalars(
                {f"controller/{key}": value for key, value in step_summary.items()}
                | {f"controller/update_{key}": float(value) for key, value in stats.items()},
                epoch_start + math.ceil((k + 1) * ctx.steps_per_epoch / s.controller_steps),
            )
            bar.set_postfix(reward=f"{step_summary['reward_mean']:.3f}")
    summary = {"controller_s": time.perf_counter() - start}
    if scored:
        summary |= scored_summary(scored, entropies)
        summary |= {f"update_{key}": float(np.mean(values)) for key, values in update_stats.items()}
    return summary


def scored_summary(records: list[dict[str, Any]], entropies: list[float]) -> dict[str, float]:
    """Means (and the best reward) over scored archs; ``entropy`` of the controller's samples."""
    return {
        "reward_mean": float(np.mean([r["reward"] for r in records])),
        "reward_max": float(np.max([r["reward"] for r in records])),
        "val_accuracy": float(np.mean([r["accuracy"] for r in records])),
        "latency_ms": float(np.mean([r["latency_ms"] for r in records])),
        "entropy": float(np.mean(entropies)),
    }


def score_samples(
    ctx: SearchContext, scorer: ArchScorer | MeanScorer, samples: Sequence[Sample | Arch], batches: list[Batch], *,
    phase: str, epoch: int,
) -> list[dict[str, Any]]:
    """Accuracy on ``batches`` (all archs read from the device at once), predicted latency and
    reward of each sample, as log records."""
    archs = [s if isinstance(s, Arch) else ctx.space.arch(s.values) for s in samples]
    records = []
    for arch, accuracy in zip(archs, scorer.accuracies(archs, batches)):
        latency_ms = ctx.latency(arch)
        records.append({
            "arch": arch.to_json_dict(),
            "arch_str": ctx.space.arch_string(arch),
            "hash": arch.hash,
            "accuracy": accuracy,
            "latency_ms": latency_ms,
            "reward": float(ctx.reward(accuracy, latency_ms)),
            "phase": phase,
            "epoch": epoch + 1,
            "controller": ctx.controller_name,
        })
    return records


def rank_key(record: dict[str, Any]) -> tuple[float, float, float, str]:
    """Best first: higher reward, then higher accuracy, then lower latency, then hash (a total order)."""
    return (-record["reward"], -record["accuracy"], record["latency_ms"], record["hash"])


def remember_best(ctx: SearchContext, records: list[dict[str, Any]]) -> None:
    """Keep the ``final.top_k`` best distinct networks scored so far (latest score of each).

    Distinct by ``arch_str``, not hash: archs that differ only in the choices of a skipped
    layer are one network (one string) under several hashes.
    """
    by_network = {r["arch_str"]: r for r in ctx.state.best}
    by_network.update({r["arch_str"]: r for r in records})
    ctx.state.best = sorted(by_network.values(), key=rank_key)[: ctx.settings.final.top_k]


# ---- phase 3: final selection -----------------------------------------------------------


def final_phase(ctx: SearchContext) -> list[dict[str, Any]]:
    """Score the candidates on the whole validation split; return them ranked, best first.

    Candidates: ``final.num_samples`` fresh controller samples plus the best archs the
    controller phases found, one per network (``arch_string``; first occurrence kept).
    """
    s = ctx.settings
    epoch = ctx.state.epoch - 1
    candidates: dict[str, Arch] = {}
    with torch.no_grad(), torch_threads(ctx.controller.threads):
        drawn = [ctx.space.arch(sample.values) for sample in ctx.controller.sample(s.final.num_samples)]
    for arch in drawn + [ctx.space.arch_from_json_dict(r["arch"]) for r in ctx.state.best]:
        candidates.setdefault(ctx.space.arch_string(arch), arch)
    val = [ctx.to_device(b) for b in ctx.make_loader("val", batch_size=s.val_batch_size, shuffle=False, seed=0)]
    if not val:
        raise ValueError("the val split is empty: nothing to score the final archs on")
    recal = recalibration_batches(ctx, ctx.state.epoch) if s.final.bn_mode == "recalibrate" else []
    records = []
    mine = ctx.world.mine(list(candidates.values()))
    supernets = [ctx.supernet, *ctx.referee_supernets()]
    refit = first_examples(cycle_batches(ctx, "train", batch_size=s.val_batch_size, tag="refit"), s.final.refit_examples)
    scorers = [ArchScorer(net, bn_mode=s.final.bn_mode, recalibration_batches=recal, refit_batches=refit,
                          refit_l2=s.final.refit_l2) for net in supernets]
    with MeanScorer(scorers) as scorer, ctx.tracker.bar(len(mine), "final") as bar:
        for arch in mine:
            records += score_samples(ctx, scorer, [arch], val, phase="final", epoch=epoch)
            bar.update()
    records = gather(records, ctx.world)
    ctx.tracker.log_scored(records)
    return sorted(records, key=rank_key)


def choice_labels(space: SearchSpace) -> dict[str, list[str]]:
    """TensorBoard labels of each decision's probabilities: option values or input indices."""
    return {
        d.name: [str(o) for o in d.options] if isinstance(d, Categorical) else [f"in{j}" for j in range(d.num_inputs)]
        for d in space.decisions
    }
