"""NetAdapt (Yang et al. 2018): prune a trained model, group by group, to a latency budget.

``netadapt`` is the paper's loop. Each iteration ``k`` (0-based) asks for a latency
reduction ``step_k = init_ratio * decay**k * L0`` (``L0``: the model's measured latency
at the start), clipped so as not to go below the target. For every prunable channel
group it proposes the fewest filters to remove (widths in multiples of ``divisor``, the
smallest-L2-norm filters) so that the *predicted* latency drops by at least the step,
or, where even the narrowest width falls short and the group is a residual branch, the
removal of its block (``ChannelGroup.removal``: small networks on a CPU spend much of
their time in per-layer overhead that no width cut removes); predictions come from the
search's lookup table. Each proposal gets the same short fine-tune (``short_steps``
steps of the one training step, ``nas.train.loop.train_step``, on the same batches)
and is scored on validation data; the best one is kept (``pick``: ``accuracy``, the
paper's rule, or ``accuracy_per_ms``, the reference code's: least accuracy lost per ms
saved) and its latency measured. The loop stops when the measured latency reaches the target.

Latency is measured robustly, outside the loop (``nas.latency.relative.RelativeLatency``):
every model as a ratio to the original one, timed in turns, and a stop confirmed on a
longer measurement. Departures from the paper: steps are converted to the table's scale
with the current model's predicted / measured ratio (``iteration_step``); the last step
is clipped to the distance left; a step that no single group can deliver, or whose every
proposal would land more than ``overshoot_tolerance`` below the target, is halved (up to
``MAX_STEP_HALVINGS`` times, ``choose_step``); residual blocks can be removed whole; a
target under the most pruned network's latency is refused up front (``check_reachable``).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from nas.compress.pruning import (
    candidate_widths,
    channel_groups,
    prune_model,
)
from nas.evaluate.accuracy import top1_accuracy
from nas.latency.relative import RelativeLatency
from nas.train.loop import parameter_groups, train_step
from search_spaces.base import Arch, InputShape, SearchSpace

log = logging.getLogger(__name__)

PICK_RULES = ("accuracy", "accuracy_per_ms")
# When no single group can save an iteration's step, the step is halved up to this many
# times before the loop gives up (late in a run, on a small model, single groups save little).
MAX_STEP_HALVINGS = 6
Batches = Sequence[tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class AdaptSettings:
    """The NetAdapt loop's settings; ``conf/adapt.yaml`` documents each."""

    init_ratio: float = 0.025
    decay: float = 0.96
    max_iterations: int = 50
    divisor: int = 8
    min_channels: int = 8
    pick: str = "accuracy"
    short_steps: int = 50
    short_lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 1e-4
    measure_rounds: int = 15
    overshoot_tolerance: float = 0.03

    def __post_init__(self) -> None:
        if not 0.0 < self.init_ratio < 1.0:
            raise ValueError(f"netadapt.init_ratio must be in (0, 1), got {self.init_ratio}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"netadapt.decay must be in (0, 1], got {self.decay}")
        if self.max_iterations < 1:
            raise ValueError(f"netadapt.max_iterations must be >= 1, got {self.max_iterations}")
        if self.divisor < 1 or self.min_channels < 1:
            raise ValueError(f"netadapt.divisor and min_channels must be >= 1, got {self.divisor}, {self.min_channels}")
        if self.pick not in PICK_RULES:
            raise ValueError(f"netadapt.pick={self.pick!r} is not one of {list(PICK_RULES)}")
        if self.measure_rounds < 1:
            raise ValueError(f"netadapt.measure_rounds must be >= 1, got {self.measure_rounds}")
        if not 0.0 <= self.overshoot_tolerance < 1.0:
            raise ValueError(f"netadapt.overshoot_tolerance must be in [0, 1), got {self.overshoot_tolerance}")
        if self.short_steps < 0 or self.short_lr < 0:
            raise ValueError(f"netadapt.short_steps and short_lr must be >= 0, got {self.short_steps}, {self.short_lr}")


@dataclass(frozen=True)
class Proposal:
    """Remove filters from one group: ``group`` goes from ``channels_before`` to
    ``channels`` (0: its block is removed, ``arch`` skips it)."""

    group: str
    channels_before: int
    channels: int
    widths: dict[str, int]
    predicted_ms: float
    arch: Arch


@dataclass
class TraceRow:
    """One accepted iteration (iteration 0: the unpruned model)."""

    iteration: int
    group: str
    channels_before: int
    channels: int
    step_ms: float
    predicted_ms: float
    measured_ms: float  # this model's measurement, as taken
    latency_ms: float  # the starting latency x (this model / the original, measured in turns)
    val_accuracy: float
    proposals: int
    seconds: float
    elapsed_s: float


@dataclass
class AdaptResult:
    model: nn.Module
    arch: Arch  # the input arch, or with the removed blocks skipped
    widths: dict[str, int]
    target_ms: float
    initial_ms: float
    trace: list[TraceRow] = field(default_factory=list)
    stop_reason: str = ""
    floor_ratio: float = 0.0  # the most pruned network's latency / the start's, measured in turns

    @property
    def iterations(self) -> int:
        return len(self.trace) - 1


def propose(
    space: SearchSpace,
    arch: Arch,
    widths: Mapping[str, int],
    *,
    predict: Callable[[Arch, dict[str, int]], float],
    required_ms: float,
    divisor: int,
    min_channels: int,
) -> list[Proposal]:
    """Per prunable group, the widest narrower width whose predicted latency is at most
    ``required_ms`` (i.e. the fewest filters removed), else the removal of its block
    where the group allows it; groups that cannot get there are left out."""
    proposals = []
    for group in channel_groups(space, arch, widths):
        if not group.prunable:
            continue
        for channels in candidate_widths(
            group.channels, divisor=divisor, min_channels=min_channels, forbidden=group.forbidden
        ):
            trial = {**widths, group.name: channels}
            predicted = predict(arch, trial)
            if predicted <= required_ms:
                proposals.append(Proposal(group.name, group.channels, channels, trial, predicted, arch))
                break
        else:
            if group.removal:
                removed = space.arch({**arch.as_dict(), **dict(group.removal)})
                rest = {k: v for k, v in widths.items() if k != group.name}
                predicted = predict(removed, rest)
                if predicted <= required_ms:
                    proposals.append(Proposal(group.name, group.channels, 0, rest, predicted, removed))
    return proposals


def most_pruned(
    space: SearchSpace, arch: Arch, widths: Mapping[str, int], *, divisor: int, min_channels: int
) -> tuple[Arch, dict[str, int]]:
    """The network with every removable block removed and every other group at its
    narrowest width: a bound on how fast pruning can make ``arch``. Each group's width
    is judged on its own, so together they may even drop convs that pruning one group
    at a time keeps: the bound is optimistic, never refusing a reachable target."""
    removable = [g for g in channel_groups(space, arch, widths) if g.prunable and g.removal]
    floor_arch = space.arch({**arch.as_dict(), **{k: v for g in removable for k, v in g.removal}})
    kept = {name: width for name, width in widths.items() if name not in {g.name for g in removable}}
    narrowest = {}
    for group in channel_groups(space, floor_arch, kept):
        if group.prunable:
            options = candidate_widths(group.channels, divisor=divisor, min_channels=min_channels, forbidden=group.forbidden)
            narrowest[group.name] = options[-1] if options else group.channels
    return floor_arch, narrowest


def check_reachable(
    space: SearchSpace, arch: Arch, widths: Mapping[str, int], timing: RelativeLatency, target_ms: float,
    settings: AdaptSettings, *, num_classes: int, input_shape: InputShape,
) -> float:
    """``most_pruned``'s latency over the start's, measured in turns; raises when even it
    misses the target (weights do not matter for timing; the caller's RNG is left untouched)."""
    floor_arch, floor_widths = most_pruned(space, arch, widths, divisor=settings.divisor,
                                           min_channels=settings.min_channels)
    with torch.random.fork_rng(devices=[]):
        floor = space.build(floor_arch, num_classes=num_classes, input_shape=input_shape, widths=floor_widths)
    floor_ratio = timing.ratio(floor.eval())
    initial_ms = timing.reference_ms
    if initial_ms * floor_ratio > target_ms:
        raise ValueError(
            f"the target ({target_ms:.3f} ms, {target_ms / initial_ms:.2f} of the model's {initial_ms:.3f} ms) is out "
            f"of reach: with every removable block removed and every channel group at its narrowest "
            f"(netadapt.min_channels={settings.min_channels}) this model still runs at {floor_ratio:.2f} of its "
            f"latency ({initial_ms * floor_ratio:.3f} ms), the rest being per-layer overhead. Ask for a target "
            f"above that (one near it leaves little accuracy), or adapt a model with more blocks to remove"
        )
    return floor_ratio


def choose_step(
    propose_at: Callable[[float], list[Proposal]], step_ms: float, *, lowest_ms: float
) -> tuple[float, list[Proposal]]:
    """An iteration's step and its proposals (``propose_at(step)``).

    The step is halved, up to ``MAX_STEP_HALVINGS`` times, while no group can save it or
    while every proposal would predict less than ``lowest_ms`` (the target less its
    tolerance); then only the proposals that stay above it are returned. When no
    step avoids overshooting, the first step that had proposals is kept with all of them.
    """
    fallback: tuple[float, list[Proposal]] | None = None
    for _ in range(MAX_STEP_HALVINGS + 1):
        proposals = propose_at(step_ms)
        landing = [p for p in proposals if p.predicted_ms >= lowest_ms]
        if landing:
            return step_ms, landing
        if proposals and fallback is None:
            fallback = (step_ms, proposals)
        step_ms /= 2
    return fallback or (step_ms, [])


def iteration_step(
    k: int, propose_below: Callable[[float], list[Proposal]], settings: AdaptSettings, *,
    initial_ms: float, measured_ms: float, predicted_ms: float, target_ms: float,
) -> tuple[float, list[Proposal]]:
    """Iteration ``k``'s step (measured ms) and proposals (``propose_below(predicted ms)``).

    The paper's step ``init_ratio * decay**k * L0``, clipped to the distance left, halved
    where needed (``choose_step``); steps are asked in measured ms and converted to the
    table's scale with the current model's predicted / measured ratio, so a table
    calibrated on other networks cannot make the loop stop short or overshoot.
    """
    scale = predicted_ms / measured_ms
    return choose_step(
        lambda step: propose_below(predicted_ms - step * scale),
        min(settings.init_ratio * settings.decay**k * initial_ms, measured_ms - target_ms),
        lowest_ms=target_ms * (1.0 - settings.overshoot_tolerance) * scale,
    )


def short_finetune(
    model: nn.Module, batches: Batches, settings: AdaptSettings, *, device: torch.device
) -> nn.Module:
    """``settings.short_steps`` SGD steps (cross-entropy, momentum, weight decay) over
    ``batches`` (cycled), in place; returns ``model``."""
    if settings.short_steps == 0:
        return model
    optimizer = torch.optim.SGD(
        parameter_groups(model), lr=settings.short_lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for step in range(settings.short_steps):
        x, y = batches[step % len(batches)]
        train_step(model, x.to(device), y.to(device), loss_fn=loss_fn, optimizer=optimizer)
    return model


def pick_best(
    scored: list[tuple[Proposal, float]], *, rule: str, current_accuracy: float, current_predicted_ms: float
) -> int:
    """Index of the kept proposal. ``accuracy``: highest accuracy (ties: lowest predicted
    latency). ``accuracy_per_ms``: least accuracy lost per predicted ms saved."""
    if rule == "accuracy":
        keys = [(-acc, p.predicted_ms) for p, acc in scored]
    elif rule == "accuracy_per_ms":
        keys = [
            ((current_accuracy - acc) / max(current_predicted_ms - p.predicted_ms, 1e-9), p.predicted_ms)
            for p, acc in scored
        ]
    else:
        raise ValueError(f"pick rule {rule!r} is not one of {list(PICK_RULES)}")
    return min(range(len(scored)), key=keys.__getitem__)


def netadapt(
    space: SearchSpace,
    arch: Arch,
    model: nn.Module,
    *,
    num_classes: int,
    input_shape: InputShape,
    predict_layers: Callable[[list], float],
    measure: Callable[[nn.Module], float],
    train_batches: Callable[[int], Batches],
    val_batches: Batches,
    target_ms: float | None = None,
    target_ratio: float | None = None,
    widths: Mapping[str, int] | None = None,
    settings: AdaptSettings = AdaptSettings(),
    device: torch.device = torch.device("cpu"),
    on_iteration: Callable[[list[TraceRow]], None] | None = None,
) -> AdaptResult:
    """Prune ``model`` (the build of ``arch`` with ``widths``) until its measured latency
    is at most the target. Exactly one of ``target_ms`` / ``target_ratio`` (of the
    measured starting latency) is given.

    ``predict_layers(space.layers(...))`` predicts ms (``LatencyTable.predict``);
    ``measure(model)`` measures ms; ``train_batches(k)`` gives iteration ``k``'s short
    fine-tune batches (the same for every proposal of the iteration). ``model`` is not
    changed; the result holds the pruned, short-fine-tuned model (no long fine-tune).
    ``on_iteration(trace)`` is called after the start and after every iteration (e.g. to
    write the trace as it grows).
    """
    if (target_ms is None) == (target_ratio is None):
        raise ValueError("give exactly one of target_ms and target_ratio")
    start = time.perf_counter()
    widths = {g.name: g.channels for g in channel_groups(space, arch, widths) if g.prunable}
    if not widths:
        raise ValueError(f"this {space.name} arch has no prunable channel group; nothing to adapt")
    model = copy.deepcopy(model).to(device)

    def predict(a: Arch, w: Mapping[str, int]) -> float:
        return predict_layers(space.layers(a, num_classes=num_classes, input_shape=input_shape, widths=dict(w)))

    timing = RelativeLatency(copy.deepcopy(model).eval(), measure, rounds=settings.measure_rounds)
    initial_ms = timing.reference_ms
    if target_ms is None:
        if not 0.0 < target_ratio < 1.0:  # type: ignore[operator]
            raise ValueError(f"target_ratio must be in (0, 1), got {target_ratio}")
        target_ms = float(target_ratio) * initial_ms  # type: ignore[arg-type]
    if target_ms <= 0:
        raise ValueError(f"target_ms must be > 0, got {target_ms}")
    floor_ratio = check_reachable(
        space, arch, widths, timing, target_ms, settings, num_classes=num_classes, input_shape=input_shape
    )
    predicted_ms, measured_ms = predict(arch, widths), initial_ms
    val_acc = top1_accuracy(model.eval(), val_batches, device=device)
    trace = [
        TraceRow(0, "", 0, 0, 0.0, predicted_ms, measured_ms, measured_ms, val_acc, 0, 0.0, time.perf_counter() - start)
    ]
    log.info("start: measured %.3f ms (predicted %.3f), val accuracy %.4f, target %.3f ms (the most pruned "
             "network: %.2f of the start)", measured_ms, predicted_ms, val_acc, target_ms, floor_ratio)
    result = AdaptResult(model, arch, widths, target_ms, initial_ms, trace, floor_ratio=floor_ratio)
    if on_iteration is not None:
        on_iteration(trace)
    for k in range(settings.max_iterations):
        if measured_ms <= target_ms:
            result.stop_reason = "target reached"
            return result
        iteration_start = time.perf_counter()
        step_ms, proposals = iteration_step(
            k, lambda required_ms: propose(
                space, arch, widths, predict=predict, required_ms=required_ms,
                divisor=settings.divisor, min_channels=settings.min_channels,
            ),
            settings, initial_ms=initial_ms, measured_ms=measured_ms, predicted_ms=predicted_ms, target_ms=target_ms,
        )
        if not proposals:
            result.stop_reason = (
                f"no group can be pruned further (narrower widths predict no saving, or all are at their "
                f"minimum); reached {measured_ms:.3f} ms of the {target_ms:.3f} ms target"
            )
            log.warning("stop: %s", result.stop_reason)
            return result
        batches = train_batches(k)
        scored, candidates = [], []
        for proposal in proposals:
            candidate = prune_model(
                space, arch, model, widths=widths, new_widths=proposal.widths, new_arch=proposal.arch,
                num_classes=num_classes, input_shape=input_shape,
            )
            short_finetune(candidate, batches, settings, device=device)
            scored.append((proposal, top1_accuracy(candidate.eval(), val_batches, device=device)))
            candidates.append(candidate)
        best = pick_best(scored, rule=settings.pick, current_accuracy=val_acc, current_predicted_ms=predicted_ms)
        proposal, val_acc = scored[best]
        model, arch, widths = candidates[best], proposal.arch, proposal.widths
        predicted_ms = proposal.predicted_ms
        turns = timing.turns(model, confirm_below=target_ms)  # a stop is decided on a longer measurement
        raw_ms, original_ms, measured_ms = turns.model_ms, turns.reference_ms, initial_ms * turns.ratio
        trace.append(
            TraceRow(
                k + 1, proposal.group, proposal.channels_before, proposal.channels, step_ms, predicted_ms,
                raw_ms, measured_ms, val_acc, len(proposals), time.perf_counter() - iteration_start,
                time.perf_counter() - start,
            )
        )
        log.info(
            "iteration %d: %s %d -> %d channels (of %d proposals); predicted %.3f ms, measured %.3f ms "
            "(original %.3f: %.3f ms at the starting load), val accuracy %.4f (%.1fs)", k + 1, proposal.group,
            proposal.channels_before, proposal.channels, len(proposals), predicted_ms, raw_ms, original_ms,
            measured_ms, val_acc, trace[-1].seconds,
        )
        result.model, result.arch, result.widths = model, arch, widths
        if on_iteration is not None:
            on_iteration(trace)
    result.stop_reason = (
        "target reached" if measured_ms <= target_ms else f"max_iterations ({settings.max_iterations}) reached"
    )
    return result
