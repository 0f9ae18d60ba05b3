"""Scoring an arch with an output layer of its own: the supernet's last ``nn.Linear``
refitted, for that arch alone, on its frozen shared features of a few training examples.

Why: the shared classifier is fitted to the features of every arch at once, mostly of
the deepest ones the sandwich trains at each step; an arch that drops layers hands it
features it was not fitted to, and its score falls further than its standalone
accuracy does (docs/rank_options.md, "What the supernets misjudge, option by
option"). Refitting the last layer per arch is a convex problem (an L2-regularised
multinomial logistic regression, solved by L-BFGS from the shared weights), so it
costs one forward pass over the examples and a fraction of a second of fitting.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]


def check_refit(examples: int, l2: float, *, setting: str) -> None:
    """ValueError naming ``setting`` (``rank`` or ``trainer.final``) unless both are >= 0."""
    if examples < 0 or l2 < 0:
        raise ValueError(f"{setting}.refit_examples={examples} and {setting}.refit_l2={l2} must be >= 0 "
                         "(refit_examples=0: score with the shared output layer)")


def output_layer(supernet: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of ``supernet`` in module order: the layer that gives the
    logits in every supernet melnas builds (and in a space's own, if it keeps its
    classifier last)."""
    linears = [m for m in supernet.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(supernet).__name__} has no nn.Linear output layer to refit per arch")
    return linears[-1]


def first_examples(batches: Iterable[Batch], count: int) -> list[Batch]:
    """The first ``count`` examples of ``batches``, as batches (the last one cut short)."""
    kept: list[Batch] = []
    left = count
    if left <= 0:
        return kept
    for x, y in batches:  # an endless stream is read no further than needed
        kept.append((x[:left], y[:left]))
        left -= len(y)
        if left <= 0:
            break
    return kept


@torch.no_grad()
def layer_inputs(forward: Callable[[Tensor], Tensor], layer: nn.Module, batches: Sequence[Batch]) -> tuple[Tensor, Tensor]:
    """(inputs of ``layer``, labels) over ``batches``, ``forward`` run on each batch."""
    seen: list[Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach()))
    try:
        for x, _ in batches:
            forward(x)
    finally:
        handle.remove()
    if len(seen) != len(batches):
        raise ValueError(f"the output layer {layer} ran {len(seen)} times over {len(batches)} batches: refitting "
                         "needs a supernet whose last nn.Linear gives every arch's logits, once per forward")
    return torch.cat(seen), torch.cat([y for _, y in batches])


def fit_output_layer(features: Tensor, labels: Tensor, weight: Tensor, bias: Tensor, *,
                     l2: float, max_iter: int = 200) -> tuple[Tensor, Tensor]:
    """``(weight, bias)`` minimising the mean cross-entropy of ``features @ weight.T + bias``
    plus ``l2 * ||weight||^2``, started from the given ones (the optimum is unique: the
    start only shortens the solve)."""
    w = weight.detach().clone().float().requires_grad_(True)
    b = bias.detach().clone().float().requires_grad_(True)
    x = features.float()
    solver = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        solver.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, labels) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        solver.step(closure)
    return w.detach().to(weight.dtype), b.detach().to(bias.dtype)


@contextmanager
def replaced_output(layer: nn.Linear, weight: Tensor, bias: Tensor) -> Iterator[None]:
    """``layer`` computes with ``weight`` and ``bias`` inside the block; its own parameters
    are never touched."""
    handle = layer.register_forward_hook(lambda _module, args, _out: F.linear(args[0], weight, bias))
    try:
        yield
    finally:
        handle.remove()
