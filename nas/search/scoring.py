"""Scoring an arch with the shared weights: accuracy, predicted latency, reward.

Batch-norm statistics are the delicate part of weight-shared evaluation: a
supernet's running statistics average over every arch trained so far and fit none
of them. ``BN_MODES`` selects what an arch is evaluated with:

- ``batch``: the statistics of the evaluated batch itself (what ENAS does when it
  scores a child on a validation minibatch); free, but the score depends on batch size;
- ``recalibrate``: running statistics reset and re-estimated on a few training
  batches for this arch alone (no gradients), then evaluation in eval mode; costs
  that many extra forward passes per arch, ranks archs best (Sciuto et al. 2019
  report Kendall tau up from ~0.2 to ~0.5 with recalibration);
- ``running``: the supernet's shared running statistics (eval mode); cheapest, worst.

``refit_batches`` adds a second, independent step: each arch's output layer refitted on
its own features of those training batches (``nas/search/refit.py``).

Scoring never changes the supernet: ``ArchScorer`` is a context manager that
snapshots every batch-norm buffer on entry and restores it on exit.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from nas.evaluate.accuracy import correct_on_device
from nas.io.checkpoint import preserved_rng_state
from nas.search.refit import fit_output_layer, layer_inputs, output_layer, replaced_output
from search_spaces.base import Arch, SearchSpace, Supernet

BN_MODES = ("batch", "recalibrate", "running")
Batch = tuple[Tensor, Tensor]  # x [B, 1, n_mels, frames] float32, y [B] int64


def check_bn_mode(mode: str) -> str:
    if mode not in BN_MODES:
        raise ValueError(f"bn_mode={mode!r} is not one of {', '.join(BN_MODES)}")
    return mode


class ArchScorer:
    """Accuracy of archs under the shared weights, with one batch-norm policy.

    ``recalibration_batches`` (already on the supernet's device) are used only by
    ``bn_mode="recalibrate"``; every arch sees the same ones, so scores are comparable.
    ``refit_batches`` (empty: off): each arch is scored with the supernet's output layer
    refitted to its features of these batches, with an L2 weight of ``refit_l2``.
    """

    def __init__(
        self,
        supernet: Supernet,
        *,
        bn_mode: str = "batch",
        recalibration_batches: Sequence[Batch] = (),
        refit_batches: Sequence[Batch] = (),
        refit_l2: float = 1e-4,
    ) -> None:
        self.supernet = supernet
        self.bn_mode = check_bn_mode(bn_mode)
        if self.bn_mode == "recalibrate" and not recalibration_batches:
            raise ValueError('bn_mode="recalibrate" needs at least one recalibration batch')
        self.recalibration_batches = list(recalibration_batches)
        self.refit_batches = list(refit_batches)
        self.refit_l2 = refit_l2
        self._output = output_layer(supernet) if self.refit_batches else None
        self._norms = [m for m in supernet.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self._saved: list[tuple[dict[str, Tensor], float | None]] = []
        self._was_training = supernet.training

    def __enter__(self) -> "ArchScorer":
        self._was_training = self.supernet.training
        self._saved = [
            ({name: buf.detach().clone() for name, buf in m.named_buffers(recurse=False)}, m.momentum)
            for m in self._norms
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for module, (buffers, momentum) in zip(self._norms, self._saved):
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)
                module.momentum = momentum
        self.supernet.train(self._was_training)

    @torch.no_grad()
    def accuracy(self, arch: Arch, batches: Iterable[Batch]) -> float:
        """Fraction of correctly classified examples over ``batches`` (dropout off)."""
        return self.accuracies([arch], list(batches))[0]

    @torch.no_grad()
    def accuracies(self, archs: Sequence[Arch], batches: Sequence[Batch]) -> list[float]:
        """``accuracy`` of each arch on the same ``batches``, read from the device once for
        all of them (``correct_on_device``): on a GPU the archs' forward passes queue back
        to back instead of each waiting for the previous count to reach the host."""
        counts = []
        for arch in archs:
            self._prepare(arch)
            forward = lambda x, arch=arch: self.supernet(x, arch)  # noqa: E731
            with self._output_for(forward):
                correct, seen = correct_on_device(forward, batches)
            counts.append(correct)
        return [int(c) / seen for c in torch.stack(counts).tolist()] if counts else []

    def _output_for(self, forward: Callable[[Tensor], Tensor]) -> AbstractContextManager:
        """The output layer refitted to ``forward``'s features of the refit batches, in force
        inside the block; nothing without refit batches."""
        if self._output is None:
            return nullcontext()
        features, labels = layer_inputs(forward, self._output, self.refit_batches)
        weight, bias = fit_output_layer(features, labels, self._output.weight, self._output.bias, l2=self.refit_l2)
        return replaced_output(self._output, weight, bias)

    def _prepare(self, arch: Arch) -> None:
        self.supernet.eval()
        if self.bn_mode == "running":
            return
        if self.bn_mode == "recalibrate":
            for m in self._norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the recalibration batches
                m.train()
            for x, _ in self.recalibration_batches:
                self.supernet(x, arch)
            for m in self._norms:
                m.eval()
            return
        for m in self._norms:  # "batch": normalise with the evaluated batch's statistics
            m.train()


class LatencyLookup:
    """Predicted latency (ms) per arch from a latency table, cached by arch hash.

    A table measures unknown units on first use (building and timing modules draws
    from torch's global generator); that happens inside ``preserved_rng_state`` so a
    lookup never shifts the search's random stream.
    """

    def __init__(self, predict_arch: Callable[[SearchSpace, Arch], float], space: SearchSpace) -> None:
        self._predict_arch = predict_arch
        self._space = space
        self._cache: dict[str, float] = {}

    def __call__(self, arch: Arch) -> float:
        if arch.hash not in self._cache:
            with preserved_rng_state():
                self._cache[arch.hash] = float(self._predict_arch(self._space, arch))
        return self._cache[arch.hash]
