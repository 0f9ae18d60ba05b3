"""Automatic mixed precision for the one training step (``nas.train.loop.train_step``).

``amp`` (``train``'s job-level ``amp``, the search's ``trainer.amp``):

- ``off`` (the default): float32 throughout, exactly as without this module.
- ``bf16``: the forward pass and the loss under ``torch.autocast(dtype=bfloat16)``;
  bfloat16 has float32's exponent range, so no loss scaling is needed. CPU and CUDA.
- ``fp16``: autocast to float16 with a ``GradScaler`` (float16 gradients underflow
  without it); on CUDA (torch's CPU float16 kernels are slow or missing).
- ``auto``: ``bf16`` on a CUDA device that supports it (Ampere and later), else ``off``.

The default stays ``off`` on every device: the GPU speed-up is unmeasured in this
repository (benchmarks/gpu_check.py measures it), and the supernet step was launch-bound
on an H200, where lower precision shortens only the kernels, not the launches.
Weights, optimizer state and batch-norm statistics stay float32 in every mode.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import ContextManager

import torch

AMP_CHOICES = ("off", "bf16", "fp16", "auto")


@dataclass(frozen=True)
class MixedPrecision:
    """How ``train_step`` runs: the autocast dtype (``None``: float32) and, for float16,
    the gradient scaler (its scale adapts over steps, so one instance per run)."""

    device_type: str = "cpu"
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = field(default=None, repr=False, compare=False)

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self) -> ContextManager:
        """The forward pass and the loss run in this context."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """True gradients in ``.grad`` (before clipping them by norm)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer step; with a scaler it is skipped when a gradient is inf/NaN."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()


FP32 = MixedPrecision()


def resolve_amp(amp: str, device: torch.device, *, setting: str = "amp") -> MixedPrecision:
    """The ``MixedPrecision`` of the setting ``amp`` on ``device``; ``setting`` names it in errors."""
    name = str(amp).strip().lower()
    if name not in AMP_CHOICES:
        raise ValueError(f"{setting}={amp!r} is not a precision; use one of {', '.join(AMP_CHOICES)}")
    if name == "auto":
        name = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
    if name == "off":
        return FP32
    if name == "fp16":
        if device.type != "cuda":
            raise ValueError(f"{setting}=fp16 needs a CUDA device (device is {device}); use {setting}=bf16 on CPU")
        return MixedPrecision("cuda", torch.float16, torch.amp.GradScaler("cuda"))
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{setting}=bf16: this GPU has no bfloat16 support; use {setting}=fp16 or off")
    return MixedPrecision(device.type, torch.bfloat16)
