"""The one accuracy routine: top-1 hits of logits against labels, per batch or over batches.

The training loop, the search's shared phase, shared-weight scoring and NetAdapt's
proposal scoring all count correct predictions with ``count_correct``;
``top1_accuracy`` runs a forward function over batches (no autograd) and divides.
``melnas-eval``'s report takes its accuracy from scikit-learn over the same argmax.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor

Batch = tuple[Tensor, Tensor]  # x [B, 1, n_mels, frames] float32, y [B] int64


def count_correct(logits: Tensor, y: Tensor) -> int:
    """How many rows of ``logits [B, classes]`` have their argmax at label ``y [B]``."""
    return int((logits.argmax(dim=1) == y).sum())


@torch.no_grad()
def top1_accuracy(
    forward: Callable[[Tensor], Tensor], batches: Iterable[Batch], *, device: torch.device | None = None
) -> float:
    """Fraction of examples in ``batches`` whose argmax of ``forward(x)`` is the label.

    ``forward`` is a module (already in the mode wanted: eval for dropout off) or any
    function of ``x``; batches are moved to ``device`` when given.
    """
    correct, seen = correct_on_device(forward, batches, device=device)
    return int(correct) / seen


@torch.no_grad()
def correct_on_device(
    forward: Callable[[Tensor], Tensor], batches: Iterable[Batch], *, device: torch.device | None = None
) -> tuple[Tensor, int]:
    """(hits as a 0-d tensor on the logits' device, examples seen) of ``forward`` over ``batches``.

    Nothing here waits for the device: a caller scoring many archs reads all their counts
    at once (``ArchScorer.accuracies``), so a GPU runs one arch's kernels straight after
    the previous arch's instead of idling while the host reads each count.
    """
    correct: Tensor | int = 0
    seen = 0
    for x, y in batches:
        if device is not None:
            x, y = x.to(device), y.to(device)
        correct = correct + (forward(x).argmax(dim=1) == y).sum()
        seen += int(y.numel())
    if seen == 0:
        raise ValueError("no examples to score: the batches are empty")
    return torch.as_tensor(correct), seen
