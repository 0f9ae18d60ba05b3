"""``run_search``: an ENAS search, resumable. ``melnas-search`` (experiments/search.py) turns
``conf/search.yaml`` into a ``SearchSettings``, the data and space configs, a controller
factory and a reward, and passes them in; nothing here reads a config file or Hydra.

The run directory receives (see the brief's run-output contract)::

    checkpoints/last.pt    written atomically after every epoch
    search_log.jsonl       one line per scored arch (phase "controller" or "final")
    tensorboard/           train loss/accuracy per minibatch; per epoch: validation
                           accuracy, reward, baseline, entropy, latency, choice
                           probabilities, the best arch so far (text)
    best_arch.json         the best final arch: {"space", "choices", "space_config",
                           "accuracy", "latency_ms", "reward", ...}
    top_archs.json         the top ``trainer.final.top_k`` of the same, best first
    search_summary.json    per-epoch figures (reward, entropy, phase times) and totals

Resuming: ``resume=true`` with the same config and ``hydra.run.dir`` pointing at the
interrupted run continues from ``checkpoints/last.pt``; the result is identical to an
uninterrupted run on the same machine (same seed, CPU). The checkpoint holds the
supernet, controller, optimizer and LR schedule, counters, the best archs so far, the
size of ``search_log.jsonl`` at that point (later lines are dropped on resume) and the
Python/NumPy/torch generator states.

Under torchrun (nas/distributed.py) every rank builds the same context (rank 0 first
prepares the data and the latency table; the others then read them), rank 0's run
directory is the run's, and rank 0 alone writes. At every epoch end all ranks adopt
rank 0's generator states and controller (they are kept identical anyway: same seed,
same draws, same gathered rewards; this makes it exact), so the checkpoint's single set
of states is every rank's, and a resume restores it on every rank: a run may be resumed
with any number of processes (``trainer.batch_size`` is the global batch, so the
schedule and the step counts do not depend on it).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from controllers.base import Controller
from nas.io.atomic import atomic_write_json
from nas.io.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    preserved_rng_state,
    restore_rng_state,
    save_checkpoint,
)
from nas.data.dataset import make_loader, open_prepared
from nas.data.prepare import prepare_for_run
from nas.distributed import (
    SINGLE, World, broadcast_object, broadcast_parameters, local_device, process_group, rank_zero_first,
)
from nas.runtime import resolve_device, resolve_threads, torch_threads
from nas.latency.measure import latency_table_for
from nas.latency.settings import LatencyTableSettings
from nas.io.registry import build_space
from nas.search.sampling import check_space_sampling
from nas.search.scoring import LatencyLookup, check_bn_mode
from nas.search.few_shot import build_supernet, split_if_due
from nas.search.phases import (
    SearchContext,
    SearchState,
    choice_labels,
    controller_phase,
    final_phase,
    train_shared_epoch,
)
from nas.search.referees import Referee, check_referees, load_referees
from nas.search.resume import CHECKPOINT, CHECKPOINT_FORMAT, check_resumable, check_same_data, identity_of
from nas.search.reward import Reward, RewardBuilder
from nas.search.settings import TrainerSettings
from nas.search.shared_supernet import SupernetSource, followed_source, keep_epoch_supernet
from nas.search.tracking import LOGGER, RunTracker, SilentTracker
from nas.train.amp import resolve_amp
from nas.train.loop import few_steps_warning



# A controller of the space's decisions: ``controller_factory(decisions, seed=seed)``.
ControllerFactory = Callable[..., Controller]


@dataclass(frozen=True)
class SearchSettings:
    """``conf/search.yaml``'s own keys and its ``trainer`` and ``latency_table`` groups."""

    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    latency_table: LatencyTableSettings = field(default_factory=LatencyTableSettings)
    seed: int = 0  # supernet init, controller, data order
    resume: bool = False  # continue from <run_dir>/checkpoints/last.pt

    def __post_init__(self) -> None:
        check_bn_mode(self.trainer.bn_mode)
        check_bn_mode(self.trainer.final.bn_mode)


@dataclass
class SearchOutcome:
    """What ``run_search`` returns; ``finished`` is false after ``trainer.stop_after_epochs``."""

    run_dir: Path
    finished: bool
    epochs_done: int
    top: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def best(self) -> dict[str, Any] | None:
        return self.top[0] if self.top else None


@dataclass(frozen=True)
class SearchInputs:
    """What a search runs on besides its settings: plain data and built objects."""

    data: Mapping[str, Any]  # the ``data`` config group (``nas.data.prepare.prepare_dataset``)
    space_config: Mapping[str, Any]  # the ``search_space`` group, with its ``_target_``
    controller: ControllerFactory  # ``controller(decisions, seed=seed)``
    reward: RewardBuilder
    controller_name: str | None = None  # labels the log (``enas_lstm``); None: the class name
    # The run's whole config (plain): a resume must match it (``RESUME_FREE_KEYS`` of
    # nas/search/resume.py aside). None: the settings, data and space config.
    config: Mapping[str, Any] | None = None
    # trainer.final.referees and the referee searches (experiments/referee_searches.py), read
    referees: Sequence[Referee] = ()


def run_search(settings: SearchSettings, inputs: SearchInputs, *, run_dir: str | Path) -> SearchOutcome:
    """Run (or, with ``settings.resume``, continue) a search in ``run_dir``."""
    started = time.perf_counter()
    with process_group(resolve_device(settings.trainer.device)) as world, \
            torch_threads(resolve_threads(settings.trainer.threads)):
        return _run_search(settings, inputs, broadcast_object(Path(run_dir), world), started, world)


def _run_search(
    settings: SearchSettings, inputs: SearchInputs, run_dir: Path, started: float, world: World = SINGLE
) -> SearchOutcome:
    checkpoint = checkpoint_to_resume(run_dir, resume=settings.resume)
    config = inputs.config if inputs.config is not None else {
        **asdict(settings), "data": dict(inputs.data), "search_space": dict(inputs.space_config)}
    run_identity = identity_of(config)
    if checkpoint is not None:
        check_resumable(checkpoint, run_identity, run_dir / CHECKPOINT)
    ctx, space_config = build_context(settings, inputs, run_dir, checkpoint, world)
    try:
        if checkpoint is not None:
            restore(ctx, checkpoint)
            ctx.tracker.info(f"resumed {run_dir} after epoch {ctx.state.epoch}/{settings.trainer.epochs}")
        setup_s = time.perf_counter() - started
        ctx.tracker.info(
            f"search {ctx.space.name} ({len(ctx.space.decisions)} decisions) with {ctx.controller_name} on "
            f"{ctx.device}{f' x {world.size} processes' if world.distributed else ''}: {ctx.steps_per_epoch} train "
            f"steps/epoch; data and latency table ready in {setup_s:.1f} s{_target_note(inputs.reward, ctx.reward)}"
        )
        source = followed_source(ctx, identity=run_identity, cache_dir=inputs.data["cache_dir"])
        return _search(ctx, run_dir, space_config, run_identity, setup_s=setup_s, referees=inputs.referees,
                       source=source)
    finally:
        ctx.tracker.close()


def checkpoint_to_resume(run_dir: Path, *, resume: bool) -> dict[str, Any] | None:
    """The checkpoint ``resume=true`` continues from; errors for a missing one or a clash."""
    path = run_dir / CHECKPOINT
    if resume and not path.is_file():
        raise CheckpointError(f"resume=true but there is no {path}: pass hydra.run.dir=<the run directory to resume>")
    if not resume and path.is_file():
        raise ValueError(
            f"{run_dir} already holds a search ({path}); pass resume=true to continue it or choose another hydra.run.dir"
        )
    return load_checkpoint(path) if resume else None


def _target_note(builder: RewardBuilder, reward: Reward) -> str:
    """The reward's latency target (and the preset it was read from), for the run's first log line."""
    if reward.target_ms is None:
        return ""
    source = f"{builder.target_ms}'s predicted latency" if isinstance(builder.target_ms, str) else "reward.target_ms"
    return f"; reward target {reward.target_ms:.4g} ms ({source})"


def build_context(
    search: SearchSettings, inputs: SearchInputs, run_dir: Path, checkpoint: Mapping[str, Any] | None,
    world: World = SINGLE,
) -> tuple[SearchContext, dict]:
    """Data, space, supernet, controller, reward, latency table, optimizer: a fresh run's state.

    Everything is seeded from ``search.seed``; a resumed run builds the same and then loads
    the checkpoint over it. Returns the context and the space config.
    """
    settings = search.trainer
    space_config = dict(inputs.space_config)
    space = build_space(space_config)  # the space's settings are checked before any data is read or timed
    check_space_sampling(space, settings.sampling)
    inputs.reward.check(space)
    if settings.sampling == "sandwich" and settings.sandwich_draw == "budget" and inputs.reward.target_ms is None:
        raise ValueError("trainer.sandwich_draw=budget trains the archs near the reward's latency target, and this "
                         "reward has none: set reward.target_ms (ms, or a preset such as mobilenetv3_small) or "
                         "another trainer.sandwich_draw")
    device = local_device(resolve_device(settings.device), world)
    if settings.batch_size % world.size:
        raise ValueError(f"trainer.batch_size={settings.batch_size} is the global batch: it must be a multiple "
                         f"of the {world.size} processes; change trainer.batch_size or --nproc_per_node")
    with rank_zero_first(world):
        prepare_for_run(inputs.data, progress=settings.progress)  # builds the cache or reuses an up-to-date one
    data = open_prepared(inputs.data["cache_dir"])
    split_identity = data.split_identity  # a digest of every window's source and split: computed once
    if checkpoint is not None:
        check_same_data(checkpoint, split_identity, run_dir=run_dir, cache_dir=inputs.data["cache_dir"],
                        setting="resume=true", remedy="start a new search (another hydra.run.dir), or put the "
                        "recordings and settings back as they were when this run started")
    steps_per_epoch = len(data.rows("train")) // settings.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"the train split of {data.cache_dir} has {len(data.rows('train'))} windows, fewer than "
            f"trainer.batch_size={settings.batch_size}; lower trainer.batch_size"
        )
    if world.is_writer and (warning := few_steps_warning(steps_per_epoch, settings.batch_size, len(data.rows("train")),
                                                         "trainer.batch_size")):
        LOGGER.warning(warning)
    seed = search.seed
    seed_everything(seed)
    check_referees(inputs.referees, space_config=space_config, data_cache_dir=inputs.data["cache_dir"],
                   split_identity=split_identity, setting="trainer.final.referees", run_dir=run_dir)
    supernet = build_supernet(space, settings.few_shot, num_classes=data.num_classes, input_shape=data.input_shape,
                              zero_init_residual=settings.zero_init_residual).to(device)
    with preserved_rng_state():  # building torch modules draws from torch's generator: a controller
        # that has some must not shift the supernet's dropout draws, so that every controller of
        # one seed trains the shared weights alike (the sandwich rule: identically)
        controller: Controller = inputs.controller(space.decisions, seed=seed)
    broadcast_parameters(supernet, world)
    with preserved_rng_state(), rank_zero_first(world):
        table = latency_table_for(
            space, num_classes=data.num_classes, input_shape=data.input_shape, seed=seed,
            **search.latency_table.kwargs(),
        )
    optimizer = torch.optim.SGD(
        supernet.parameters(), lr=settings.lr, momentum=settings.momentum,
        nesterov=settings.nesterov, weight_decay=settings.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=settings.epochs * steps_per_epoch, eta_min=settings.lr_min
    )
    tracker = (RunTracker if world.is_writer else SilentTracker)(
        run_dir, progress=settings.progress,
        purge_step=None if checkpoint is None else checkpoint["state"]["train_step"] + 1,
    )
    latency = LatencyLookup(table.predict_arch, space)
    ctx = SearchContext(
        space=space, supernet=supernet, controller=controller, controller_name=inputs.controller_name or type(controller).__name__,
        reward=inputs.reward(space, latency), latency=latency,
        make_loader=partial(make_loader, data, num_workers=settings.num_workers, pin_memory=device.type == "cuda"),
        steps_per_epoch=steps_per_epoch, optimizer=optimizer, scheduler=scheduler, tracker=tracker, device=device,
        settings=settings, seed=seed, split_identity=split_identity, world=world,
        amp=resolve_amp(settings.amp, device, setting="trainer.amp"),
        referee_supernets=partial(load_referees, inputs.referees, space, num_classes=data.num_classes,
                                  input_shape=data.input_shape, device=device),
    )
    return ctx, space_config


def _search(
    ctx: SearchContext, run_dir: Path, space_config: dict, run_identity: dict, *, setup_s: float,
    referees: Sequence[Referee] = (), source: SupernetSource | None = None,
) -> SearchOutcome:
    """The epochs (each: shared training, or ``source``'s weights of that epoch; then the
    controller phase), then the final phase."""
    s = ctx.settings
    labels = choice_labels(ctx.space)
    epochs_this_call = 0
    while ctx.state.epoch < s.epochs:
        if s.stop_after_epochs is not None and epochs_this_call >= s.stop_after_epochs:
            ctx.tracker.info(f"stopped after epoch {ctx.state.epoch} (trainer.stop_after_epochs); resume=true continues")
            return SearchOutcome(run_dir, False, ctx.state.epoch, history=ctx.state.history)
        epoch = ctx.state.epoch
        split_if_due(ctx.supernet, s.few_shot, epoch=epoch, epochs=s.epochs, log=ctx.tracker.info)
        shared = source.adopt_epoch(ctx, epoch) if source is not None else train_shared_epoch(ctx, epoch)
        if s.keep_epoch_supernets:
            keep_epoch_supernet(ctx, run_dir, epoch, shared, run_identity)
        summary = shared | controller_phase(ctx, epoch)
        summary["epoch"] = epoch + 1
        ctx.state.epoch += 1
        ctx.state.history.append(summary)
        log_epoch(ctx, summary, labels)
        sync_from_rank_zero(ctx)
        if ctx.world.is_writer:
            save_checkpoint(run_dir / CHECKPOINT, checkpoint_state(ctx, run_identity))
        epochs_this_call += 1
    start = time.perf_counter()
    ranked = final_phase(ctx)
    top = [arch_result(r, space_config) for r in ranked[: s.final.top_k]]
    final_s = time.perf_counter() - start
    if ctx.world.is_writer:
        write_json(run_dir / "best_arch.json", top[0])
        write_json(run_dir / "top_archs.json", top)
        write_json(run_dir / "search_summary.json", {
            "epochs": ctx.state.history, "setup_s": setup_s, "final_s": final_s,
            "final_candidates": len(ranked), "final_referees": [str(referee.run_dir) for referee in referees], "best": top[0],
        })
    ctx.tracker.scalars(
        {"final/reward": top[0]["reward"], "final/accuracy": top[0]["accuracy"], "final/latency_ms": top[0]["latency_ms"]},
        ctx.state.train_step,
    )
    ctx.tracker.text("final/best_arch", f"`{top[0]['arch_str']}`", ctx.state.train_step)
    referees = f" by the supernet and {len(referees)} referee(s) (mean)" if referees else ""
    ctx.tracker.info(
        f"final: {len(ranked)} distinct archs scored on the whole val split{referees} in {final_s:.1f} s; best "
        f"{top[0]['arch_str']}: accuracy {top[0]['accuracy']:.4f}, latency {top[0]['latency_ms']:.3f} ms, "
        f"reward {top[0]['reward']:.4f}"
    )
    return SearchOutcome(run_dir, True, ctx.state.epoch, top=top, history=ctx.state.history)


def log_epoch(ctx: SearchContext, summary: dict[str, float], labels: dict[str, list[str]]) -> None:
    """TensorBoard epoch scalars and probabilities, and the one-line console summary."""
    step = ctx.state.train_step
    ctx.tracker.scalars({f"epoch/{k}": v for k, v in summary.items() if k != "epoch"}, step)
    with torch_threads(ctx.controller.threads):
        probabilities = ctx.controller.probabilities()
    ctx.tracker.probabilities(probabilities, step, labels=labels)
    if ctx.state.best:
        best = ctx.state.best[0]
        ctx.tracker.text(
            "best_arch_so_far",
            f"`{best['arch_str']}` reward {best['reward']:.4f}, accuracy {best['accuracy']:.4f} "
            f"(val minibatch), latency {best['latency_ms']:.3f} ms",
            step,
        )
    s = ctx.settings
    parts = [
        f"epoch {summary['epoch']}/{s.epochs}",
        f"train loss {summary['train_loss']:.3f} acc {summary['train_accuracy']:.3f}",
    ]
    if "reward_mean" in summary:
        parts += [
            f"val acc {summary['val_accuracy']:.3f}",
            f"reward mean {summary['reward_mean']:.4f} max {summary['reward_max']:.4f}",
            f"latency {summary['latency_ms']:.2f} ms",
            f"entropy {summary['entropy']:.2f}",
        ]
    else:
        parts.append("controller warm-up")
    total = summary["shared_s"] + summary["controller_s"]
    shared = "shared" if "shared_trained_s" not in summary else "shared weights loaded"
    parts.append(f"{total:.1f} s ({shared} {summary['shared_s']:.1f} s, controller {summary['controller_s']:.1f} s)")
    ctx.tracker.info(" | ".join(parts))


def arch_result(record: Mapping[str, Any], space_config: dict) -> dict[str, Any]:
    """A ``best_arch.json`` entry: the arch JSON, the space config that rebuilds it, its scores."""
    return {
        **record["arch"],
        "space_config": space_config,
        "accuracy": record["accuracy"],
        "latency_ms": record["latency_ms"],
        "reward": record["reward"],
        "hash": record["hash"],
        "arch_str": record["arch_str"],
        "controller": record["controller"],
    }


# ---- checkpoints ------------------------------------------------------------------------


def checkpoint_state(ctx: SearchContext, run_identity: dict) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "identity": run_identity,
        "split_identity": ctx.split_identity,
        "state": ctx.state.to_dict(),
        "supernet": ctx.supernet.state_dict(),
        "controller": ctx.controller.state_dict(),
        "optimizer": ctx.optimizer.state_dict(),
        "scheduler": ctx.scheduler.state_dict(),
        "rng": capture_rng_state(),
        "log_bytes": ctx.tracker.log_bytes(),
    }


def sync_from_rank_zero(ctx: SearchContext) -> None:
    """Every rank adopts rank 0's generator states and controller (a no-op in one process)."""
    if not ctx.world.distributed:
        return
    rng, controller = broadcast_object((capture_rng_state(), ctx.controller.state_dict()), ctx.world)
    restore_rng_state(rng)
    ctx.controller.load_state_dict(controller)


def restore(ctx: SearchContext, checkpoint: Mapping[str, Any]) -> None:
    ctx.supernet.load_state_dict(checkpoint["supernet"])
    ctx.controller.load_state_dict(checkpoint["controller"])
    ctx.optimizer.load_state_dict(checkpoint["optimizer"])
    ctx.scheduler.load_state_dict(checkpoint["scheduler"])
    ctx.state = SearchState(**checkpoint["state"])
    ctx.tracker.truncate_log(int(checkpoint["log_bytes"]))
    restore_rng_state(checkpoint["rng"])


# ---- small helpers ----------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def write_json(path: Path, data: Any) -> None:
    atomic_write_json(path, data)
