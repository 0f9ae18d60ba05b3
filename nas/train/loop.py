"""The one training loop: ``train_step`` (also NetAdapt's short fine-tune and the search's
shared-weight phase) and ``fit`` over epochs (retraining and fine-tuning).

The recipe (``conf/train/*.yaml``, ``Recipe``): an optimizer from a factory (SGD with
Nesterov momentum or AdamW; no weight decay on biases and norm parameters), a per-step
cosine schedule after a linear warm-up, cross-entropy with label smoothing, optional
augmentation, gradient-norm clipping, and early stopping on validation accuracy with a
patience in epochs. At the end the model holds the weights of its best validation epoch.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from nas.distributed import SINGLE, World, average_buffers, average_gradients, broadcast_parameters, sum_over_ranks
from nas.evaluate.accuracy import count_correct
from nas.train.amp import FP32, MixedPrecision

log = logging.getLogger(__name__)


# ---- the training loop ----------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """The training recipe; ``conf/train/default.yaml`` documents every field."""

    epochs: int
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    patience: int = 10
    grad_clip_norm: float | None = 5.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"train.epochs must be >= 1, got {self.epochs}")
        if self.patience < 1:
            raise ValueError(f"train.patience must be >= 1, got {self.patience}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"train.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_epochs < 0:
            raise ValueError(f"train.warmup_epochs must be >= 0, got {self.warmup_epochs}")


@dataclass
class FitResult:
    best_epoch: int  # 1-based
    best_val_accuracy: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    history: list[dict[str, float]]


def parameter_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only; biases and norm scales/shifts get none."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


# Fewer train steps per epoch than this draw a warning (few_steps_warning).
MIN_STEPS_PER_EPOCH = 10


def few_steps_warning(steps_per_epoch: int, batch_size: int, windows: int, setting: str) -> str | None:
    """What to tell a user whose train split gives fewer than ``MIN_STEPS_PER_EPOCH`` steps an
    epoch (None otherwise). Why it matters: schedules counted in epochs (early stopping's
    patience, warm-up) then end after a handful of steps, and batchnorm's running statistics,
    which move once per step, are still near their initial values when the model is
    validated; on a data set of ~100 short clips at the default batch of 64 every model
    stayed at chance on val while its train accuracy reached 0.9."""
    if steps_per_epoch >= MIN_STEPS_PER_EPOCH:
        return None
    suggested = max(1, windows // MIN_STEPS_PER_EPOCH)
    return (f"only {steps_per_epoch} train step(s) per epoch ({windows} train windows, {setting}={batch_size}): "
            f"epoch-counted schedules and batchnorm's running statistics see too few steps and the model may "
            f"stay near chance on val; set data.batch_size={suggested} or lower for {MIN_STEPS_PER_EPOCH} steps per "
            f"epoch (or {setting}={suggested} for this command alone)")


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """LR factor per optimizer step: linear warm-up to 1, then cosine down to ``min_ratio``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def train_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    grad_clip_norm: float | None = None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    grad_sync: Callable[[], None] | None = None,
    amp: MixedPrecision = FP32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch: forward, loss, backward, gradient-norm clipping of
    ``model``'s parameters (when ``grad_clip_norm``), optimizer step, scheduler step.

    ``forward`` defaults to ``model``; the search passes ``lambda x: supernet(x, arch)``.
    ``grad_sync`` runs between backward and clipping: averaging gradients over the ranks
    of a distributed run (``nas.distributed.average_gradients``). ``amp`` runs the forward
    pass and the loss under autocast (``nas.train.amp``; float32 by default).
    Returns the detached (loss, logits ``[B, classes]``). Retraining, NetAdapt's short
    fine-tune and the search's shared-weight phase all train through this step.
    """
    with amp.autocast():
        logits = (model if forward is None else forward)(x)
        loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    amp.backward(loss)
    if grad_sync is not None:
        grad_sync()
    if grad_clip_norm:
        amp.unscale(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
    amp.step(optimizer)
    if scheduler is not None:
        scheduler.step()
    return loss.detach(), logits.detach().float()


def _run_epoch(
    model: nn.Module,
    loader: Iterable,
    loss_fn: nn.Module,
    *,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    augment: nn.Module | None = None,
    grad_clip_norm: float | None = None,
    world: World = SINGLE,
    amp: MixedPrecision = FP32,
) -> tuple[float, float]:
    """One pass; trains when ``optimizer`` is given, else scores. Returns (mean loss, accuracy)
    over every rank's batches (``loader`` holds this rank's shard)."""
    training = optimizer is not None
    model.train(training)
    sync = (lambda: average_gradients(model.parameters(), world)) if training and world.distributed else None
    total_loss, correct, seen = 0.0, 0, 0
    with torch.set_grad_enabled(training):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if training and augment is not None:
                x = augment(x)
            if training:
                loss, logits = train_step(model, x, y, loss_fn=loss_fn, optimizer=optimizer, scheduler=scheduler,
                                          grad_clip_norm=grad_clip_norm, grad_sync=sync, amp=amp)
            else:
                logits = model(x)
                loss = loss_fn(logits, y)
            total_loss += float(loss.detach()) * y.numel()
            correct += count_correct(logits, y)
            seen += y.numel()
    if world.distributed:
        total_loss, correct, seen = sum_over_ranks([total_loss, correct, seen], world, device)
    if seen == 0:
        raise ValueError("a data loader yielded no examples: the split is empty or smaller than one batch")
    return total_loss / seen, correct / seen


def fit(
    model: nn.Module,
    *,
    train_loader: DataLoader,
    val_loader: DataLoader,
    optimizer_factory: Callable[[list[dict[str, Any]]], torch.optim.Optimizer],
    recipe: Recipe,
    augment: nn.Module | None = None,
    device: torch.device = torch.device("cpu"),
    writer: SummaryWriter | None = None,
    world: World = SINGLE,
    amp: MixedPrecision = FP32,
    batch_setting: str | None = "train.batch_size",
) -> FitResult:
    """Train ``model`` in place; at the end it holds the weights of its best validation epoch.

    ``batch_setting``: the setting a warning about too few steps per epoch names; None when
    the caller warns itself (melnas-rank, once for all its trainings).

    The best epoch has the highest validation accuracy (ties: lower validation loss);
    training stops after ``recipe.patience`` epochs without a better one.

    In a distributed run (``world``) each rank's loaders hold its shard of the split
    (``make_loader(..., shard=world)``, the global batch split across the ranks); the
    gradients are averaged every step and the batch-norm statistics every epoch, so all
    ranks hold the same weights, and the epoch's losses and accuracies are summed over
    the ranks: every rank sees the figures of the whole split and takes the same
    early-stopping decision.
    """
    model.to(device)
    broadcast_parameters(model, world)
    if augment is not None:
        augment.to(device)
    optimizer = optimizer_factory(parameter_groups(model))
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("the train split gives no batch: lower train.batch_size or add data")
    if batch_setting is not None and world.is_writer and (warning := few_steps_warning(
            steps_per_epoch, int(train_loader.batch_size or 1) * world.size, len(train_loader.dataset), batch_setting)):
        log.warning(warning)
    total_steps = recipe.epochs * steps_per_epoch
    warmup_steps = int(round(recipe.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total_steps, warmup_steps, recipe.min_lr_ratio)
    )
    train_loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    val_loss_fn = nn.CrossEntropyLoss()
    best_key = (-1.0, -math.inf)
    best_state: dict[str, torch.Tensor] = {}
    best_epoch, history = 0, []
    start = time.perf_counter()
    epoch = 0
    for epoch in range(1, recipe.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        epoch_start = time.perf_counter()
        train_loss, train_acc = _run_epoch(
            model, train_loader, train_loss_fn, device=device, optimizer=optimizer, scheduler=scheduler,
            augment=augment, grad_clip_norm=recipe.grad_clip_norm, world=world, amp=amp,
        )
        average_buffers(model, world)
        val_loss, val_acc = _run_epoch(model, val_loader, val_loss_fn, device=device, world=world)
        row = {
            "epoch": epoch, "lr": lr, "train_loss": train_loss, "train_accuracy": train_acc,
            "val_loss": val_loss, "val_accuracy": val_acc, "seconds": time.perf_counter() - epoch_start,
        }
        history.append(row)
        if writer is not None:
            for key in ("lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy"):
                writer.add_scalar(key.replace("_", "/", 1), row[key], epoch)
        improved = (val_acc, -val_loss) > best_key
        if improved:
            best_key, best_epoch = (val_acc, -val_loss), epoch
            best_state = copy.deepcopy(model.state_dict())
        log.info(
            "epoch %d/%d  lr %.4g->%.4g  train loss %.4f acc %.4f  val loss %.4f acc %.4f%s  (%.1fs)",
            epoch, recipe.epochs, lr, optimizer.param_groups[0]["lr"], train_loss, train_acc, val_loss, val_acc,
            "  *" if improved else "", row["seconds"],
        )
        if epoch - best_epoch >= recipe.patience:
            log.info("early stop: no better validation accuracy for %d epochs", recipe.patience)
            break
    model.load_state_dict(best_state)
    return FitResult(
        best_epoch=best_epoch,
        best_val_accuracy=best_key[0],
        epochs_run=epoch,
        stopped_early=epoch < recipe.epochs,
        seconds=time.perf_counter() - start,
        history=history,
    )
