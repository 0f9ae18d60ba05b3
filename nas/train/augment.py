"""SpecAugment-style masking of log-mel batches (Park et al. 2019, frequency and time masks).

The masks are applied to a whole batch on the training device, after normalisation, so
the masked value 0 is the train-split mean: a masked band looks like "average energy",
not like silence in dB.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class SpecAugment(nn.Module):
    """Zero ``freq_masks`` random mel bands and ``time_masks`` random frame spans per example.

    Each mask has a width drawn uniformly from ``[0, max_width]`` (so some masks are empty,
    as in the paper) at a uniform position; every example in the batch gets its own masks.
    The module is the identity in eval mode, so it can sit in front of a model.

    Input and output: ``[batch, channels, n_mels, frames]``.
    """

    def __init__(
        self,
        *,
        freq_masks: int = 2,
        freq_width: int = 8,
        time_masks: int = 2,
        time_width: int = 10,
    ) -> None:
        super().__init__()
        for name, value in (
            ("freq_masks", freq_masks),
            ("freq_width", freq_width),
            ("time_masks", time_masks),
            ("time_width", time_width),
        ):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"SpecAugment {name} must be a non-negative int, got {value!r}")
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width = time_width

    def extra_repr(self) -> str:
        return (
            f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, "
            f"time_masks={self.time_masks}, time_width={self.time_width}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if x.dim() != 4:
            raise ValueError(f"SpecAugment expects [batch, channels, n_mels, frames], got {tuple(x.shape)}")
        batch, _, n_mels, frames = x.shape
        keep = torch.ones(batch, 1, n_mels, frames, dtype=torch.bool, device=x.device)
        keep &= ~_band_mask(batch, n_mels, self.freq_masks, self.freq_width, x.device)[:, None, :, None]
        keep &= ~_band_mask(batch, frames, self.time_masks, self.time_width, x.device)[:, None, None, :]
        return x * keep


@dataclass(frozen=True)
class AugmentSettings:
    """``spec_augment``: SpecAugment masks per example (Park et al. 2019)."""

    enabled: bool = True
    freq_masks: int = 2
    freq_width: int = 8
    time_masks: int = 2
    time_width: int = 10

    def build(self) -> SpecAugment | None:
        """The ``SpecAugment`` module, or None when disabled."""
        if not self.enabled:
            return None
        return SpecAugment(freq_masks=self.freq_masks, freq_width=self.freq_width,
                           time_masks=self.time_masks, time_width=self.time_width)


def _band_mask(batch: int, size: int, count: int, max_width: int, device: torch.device) -> torch.Tensor:
    """``[batch, size]`` bool: True inside any of ``count`` random spans of width <= max_width."""
    mask = torch.zeros(batch, size, dtype=torch.bool, device=device)
    max_width = min(max_width, size)
    if count == 0 or max_width == 0:
        return mask
    positions = torch.arange(size, device=device)
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (batch, 1), device=device)
        start = (torch.rand(batch, 1, device=device) * (size - width + 1)).floor().long()
        mask |= (positions >= start) & (positions < start + width)
    return mask
