"""The process-level runtime: the torch device a run computes on, and its CPU thread count.

``torch_threads`` is the one place melnas changes torch's intra-op thread count (the
search's ``trainer.threads``, latency measurement); it always restores the caller's.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` as given.

    Asking for CUDA on a machine without it is an error (not a silent fall-back to
    CPU), so a run never takes 50x longer than its author expected without saying so.
    """
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a device; use one of {', '.join(DEVICE_CHOICES)}") from err
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported; use one of {', '.join(DEVICE_CHOICES)}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        why = ("this torch build has no CUDA support" if torch.version.cuda is None
               else "no CUDA device is visible (check the driver and CUDA_VISIBLE_DEVICES)")
        raise ValueError(f"device={device!r} was asked for but {why}; set device=cpu, or device=auto "
                         "to use CUDA only when present")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} was asked for but only {torch.cuda.device_count()} CUDA "
                         "device(s) are visible (numbered from 0); set device=cuda for the first")
    return resolved


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op CPU threads (``None``: leave the count as
    it is), then restore the previous count."""
    if threads is None:
        yield
        return
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
