"""The process-level runtime: the torch device a run computes on, and its CPU thread count.

``torch_threads`` is the one place melnas changes torch's intra-op thread count (the
search's ``trainer.threads``, retraining, latency measurement); it always restores the
caller's. ``resolve_threads`` picks the count of a job that shares the machine with
others launched with it (see its docstring).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")
THREADS_ENV = "MELNAS_THREADS"  # an explicit thread count for every job of this environment
PARALLEL_JOBS_ENV = "MELNAS_PARALLEL_JOBS"  # jobs launched together on this host (sweep launchers set it)


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


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_threads(explicit: int | None = None, env: dict[str, str] | None = None) -> int | None:
    """The intra-op thread count of a job; ``None`` leaves torch's default (all cores).

    First match wins: ``explicit`` (a setting such as ``trainer.threads``); the
    ``MELNAS_THREADS`` environment variable; the job's share of the cores when several
    were launched together on this host: ``LOCAL_WORLD_SIZE`` ranks under torchrun, or
    ``MELNAS_PARALLEL_JOBS`` jobs (set by melnas's commands from the joblib launcher's
    ``n_jobs``, or by hand for parallel shell jobs). Each gets ``cores // jobs`` (at
    least 1): with torch's default every job would start one thread per core, and
    oversubscribed threads wait on each other.
    """
    if explicit is not None:
        return int(explicit)
    env = dict(os.environ) if env is None else env
    if env.get(THREADS_ENV, "").strip():
        threads = int(env[THREADS_ENV])
        if threads < 1:
            raise ValueError(f"{THREADS_ENV}={threads} must be >= 1 (or unset for the default)")
        return threads
    jobs = max(int(env.get("LOCAL_WORLD_SIZE", "1") or 1), int(env.get(PARALLEL_JOBS_ENV, "1") or 1))
    return max(1, available_cores() // jobs) if jobs > 1 else None
