"""NetAdapt (Yang et al. 2018): prune a trained model, group by group, to a latency budget.

Each iteration ``k`` (0-based) asks for a latency reduction
``step_k = init_ratio * decay**k * L0`` (``L0``: the model's measured latency at the
start), clipped so as not to go below the target. For every prunable channel group
it proposes the fewest filters to remove (widths in multiples of ``divisor``, the
smallest-L2-norm filters) so that the *predicted* latency drops by at least the step;
predictions come from the search's lookup table (``nas.latency``), whose unit keys
carry the channel counts. Each proposal gets the same short fine-tune (``short_steps``
SGD steps on the same batches) and is scored on validation data; the best one is kept
(``pick``: ``accuracy``, the paper's rule, or ``accuracy_per_ms``, the reference
code's: least accuracy lost per ms saved) and its latency measured. The loop stops
when the measured latency reaches the target. Steps are asked in measured ms and
converted to the table's scale with the current model's measured / predicted ratio,
so a table calibrated on other networks cannot make the loop stop short or overshoot.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from nas.pruning import candidate_widths, channel_groups, prune_model
from nas.train import parameter_groups
from search_spaces.base import Arch, InputShape, SearchSpace

log = logging.getLogger(__name__)

PICK_RULES = ("accuracy", "accuracy_per_ms")
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
        if self.short_steps < 0 or self.short_lr < 0:
            raise ValueError(f"netadapt.short_steps and short_lr must be >= 0, got {self.short_steps}, {self.short_lr}")


@dataclass(frozen=True)
class Proposal:
    """Remove filters from one group: ``group`` goes from ``channels_before`` to ``channels``."""

    group: str
    channels_before: int
    channels: int
    widths: dict[str, int]
    predicted_ms: float


@dataclass
class TraceRow:
    """One accepted iteration (iteration 0: the unpruned model)."""

    iteration: int
    group: str
    channels_before: int
    channels: int
    step_ms: float
    predicted_ms: float
    measured_ms: float
    val_accuracy: float
    proposals: int
    seconds: float
    elapsed_s: float


@dataclass
class AdaptResult:
    model: nn.Module
    widths: dict[str, int]
    target_ms: float
    initial_ms: float
    trace: list[TraceRow] = field(default_factory=list)
    stop_reason: str = ""

    @property
    def iterations(self) -> int:
        return len(self.trace) - 1


def propose(
    space: SearchSpace,
    arch: Arch,
    widths: Mapping[str, int],
    *,
    predict: Callable[[dict[str, int]], float],
    required_ms: float,
    divisor: int,
    min_channels: int,
) -> list[Proposal]:
    """Per prunable group, the widest narrower width whose predicted latency is at most
    ``required_ms`` (i.e. the fewest filters removed); groups that cannot get there are left out."""
    proposals = []
    for group in channel_groups(space, arch, widths):
        if not group.prunable:
            continue
        for channels in candidate_widths(
            group.channels, divisor=divisor, min_channels=min_channels, forbidden=group.forbidden
        ):
            trial = {**widths, group.name: channels}
            predicted = predict(trial)
            if predicted <= required_ms:
                proposals.append(Proposal(group.name, group.channels, channels, trial, predicted))
                break
    return proposals


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
        loss = loss_fn(model(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, batches: Batches, *, device: torch.device) -> float:
    """Top-1 accuracy of ``model`` (eval mode) over ``batches``."""
    model.eval()
    correct = seen = 0
    for x, y in batches:
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
        seen += y.numel()
    if seen == 0:
        raise ValueError("no validation examples to score proposals on")
    return correct / seen


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
) -> AdaptResult:
    """Prune ``model`` (the build of ``arch`` with ``widths``) until its measured latency
    is at most the target. Exactly one of ``target_ms`` / ``target_ratio`` (of the
    measured starting latency) is given.

    ``predict_layers(space.layers(...))`` predicts ms (``LatencyTable.predict``);
    ``measure(model)`` measures ms; ``train_batches(k)`` gives iteration ``k``'s short
    fine-tune batches (the same for every proposal of the iteration). ``model`` is not
    changed; the result holds the pruned, short-fine-tuned model (no long fine-tune).
    """
    if (target_ms is None) == (target_ratio is None):
        raise ValueError("give exactly one of target_ms and target_ratio")
    start = time.perf_counter()
    widths = {g.name: g.channels for g in channel_groups(space, arch, widths) if g.prunable}
    if not widths:
        raise ValueError(f"this {space.name} arch has no prunable channel group; nothing to adapt")
    model = copy.deepcopy(model).to(device)

    def predict(w: Mapping[str, int]) -> float:
        return predict_layers(space.layers(arch, num_classes=num_classes, input_shape=input_shape, widths=dict(w)))

    initial_ms = measure(model)
    if target_ms is None:
        if not 0.0 < target_ratio < 1.0:  # type: ignore[operator]
            raise ValueError(f"target_ratio must be in (0, 1), got {target_ratio}")
        target_ms = float(target_ratio) * initial_ms  # type: ignore[arg-type]
    if target_ms <= 0:
        raise ValueError(f"target_ms must be > 0, got {target_ms}")
    predicted_ms, measured_ms = predict(widths), initial_ms
    val_acc = accuracy(model, val_batches, device=device)
    trace = [TraceRow(0, "", 0, 0, 0.0, predicted_ms, measured_ms, val_acc, 0, 0.0, time.perf_counter() - start)]
    log.info("start: measured %.3f ms (predicted %.3f), val accuracy %.4f, target %.3f ms",
             measured_ms, predicted_ms, val_acc, target_ms)
    result = AdaptResult(model, widths, target_ms, initial_ms, trace)
    for k in range(settings.max_iterations):
        if measured_ms <= target_ms:
            result.stop_reason = "target reached"
            return result
        iteration_start = time.perf_counter()
        step_ms = min(settings.init_ratio * settings.decay**k * initial_ms, measured_ms - target_ms)
        # The step is in measured ms; the table's scale is the current model's predicted / measured.
        required = predicted_ms - step_ms * predicted_ms / measured_ms
        proposals = propose(
            space, arch, widths, predict=predict, required_ms=required,
            divisor=settings.divisor, min_channels=settings.min_channels,
        )
        if not proposals:
            result.stop_reason = (
                f"no group can be pruned by {step_ms:.3f} ms any more (all at their minimum width); "
                f"reached {measured_ms:.3f} ms of the {target_ms:.3f} ms target"
            )
            log.warning("stop: %s", result.stop_reason)
            return result
        batches = train_batches(k)
        scored, candidates = [], []
        for proposal in proposals:
            candidate = prune_model(
                space, arch, model, widths=widths, new_widths=proposal.widths,
                num_classes=num_classes, input_shape=input_shape,
            )
            short_finetune(candidate, batches, settings, device=device)
            scored.append((proposal, accuracy(candidate, val_batches, device=device)))
            candidates.append(candidate)
        best = pick_best(scored, rule=settings.pick, current_accuracy=val_acc, current_predicted_ms=predicted_ms)
        proposal, val_acc = scored[best]
        model, widths, predicted_ms = candidates[best], proposal.widths, proposal.predicted_ms
        measured_ms = measure(model)
        trace.append(
            TraceRow(
                k + 1, proposal.group, proposal.channels_before, proposal.channels, step_ms, predicted_ms,
                measured_ms, val_acc, len(proposals), time.perf_counter() - iteration_start,
                time.perf_counter() - start,
            )
        )
        log.info(
            "iteration %d: %s %d -> %d channels (of %d proposals); predicted %.3f ms, measured %.3f ms, "
            "val accuracy %.4f (%.1fs)", k + 1, proposal.group, proposal.channels_before, proposal.channels,
            len(proposals), predicted_ms, measured_ms, val_acc, trace[-1].seconds,
        )
        result.model, result.widths = model, widths
    result.stop_reason = (
        "target reached" if measured_ms <= target_ms else f"max_iterations ({settings.max_iterations}) reached"
    )
    return result


def cycle(loader: Iterator) -> Iterator:
    """Endless iteration over a re-iterable loader."""
    while True:
        yield from loader
