"""Several processes, one run: torchrun's environment, gradient averaging, data shards.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) ``init_from_env`` starts the
default process group, NCCL for CUDA and gloo for CPU, and returns the ``World`` of this
process; without torchrun nothing is initialised and every helper here is the identity
of one process, so a single process runs exactly the code it ran before.

What the search and retraining do with it (nas/search/loop.py, phases.py, nas/train/job.py):

- Data: ``ShardSampler`` gives rank r the positions ``perm[r::world]`` of one permutation
  that every rank draws from the same seed, so one epoch covers every train window once.
- Gradients: ``average_gradients`` all-reduces one flag per parameter (which have a
  gradient on any rank), then the ``.grad`` of those in one flat buffer. By default all
  ranks train the same sampled arch, so the sets agree; with ``trainer.ddp_archs=per_rank``
  each rank trains its own arch and a weight it did not use counts as a zero gradient.
  Parameters no rank used keep ``grad=None`` as in one process (no weight decay, no
  momentum step). This replaces ``DistributedDataParallel``, whose
  ``find_unused_parameters`` would walk the autograd graph every step to find the set.
- Batch-norm running statistics drift apart per shard: ``average_buffers`` averages
  them once per epoch so every rank (and the checkpoint) holds the same supernet.
- Results: ``gather`` (``all_gather_object``) collects what each rank scored.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` processes in all,
    ``local_rank`` of ``local_size`` on this host."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_writer(self) -> bool:
        """Rank 0 alone writes logs, TensorBoard, checkpoints and results."""
        return self.rank == 0

    def mine(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: positions ``rank, rank + size, ...``."""
        return list(items[self.rank :: self.size])


SINGLE = World()


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """The world torchrun describes in ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``LOCAL_WORLD_SIZE``; one process when they are absent."""
    env = os.environ if env is None else env
    size = int(env.get("WORLD_SIZE", "1"))
    return World(
        rank=int(env.get("RANK", "0")), size=size,
        local_rank=int(env.get("LOCAL_RANK", "0")), local_size=int(env.get("LOCAL_WORLD_SIZE", str(size))),
    )


def init_from_env(device: torch.device) -> World:
    """Start the process group torchrun asked for (once per process); ``SINGLE`` without torchrun.

    NCCL on CUDA (each local rank on its own GPU when ``device`` names no index), gloo on
    CPU and where more ranks than GPUs share a host (ranks then share GPUs round-robin).
    """
    world = world_from_env()
    if not world.distributed:
        return SINGLE
    if not dist.is_initialized():
        # NCCL refuses two ranks on one GPU; gloo (slower, through host memory) does not.
        shared_gpu = device.type == "cuda" and world.local_size > torch.cuda.device_count()
        backend = "nccl" if device.type == "cuda" and not shared_gpu else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_device(device, world))
        dist.init_process_group(backend=backend)
    return world


def local_device(device: torch.device, world: World) -> torch.device:
    """``cuda`` -> ``cuda:<local rank>`` under torchrun (one GPU per process); else as given.

    Untested on a GPU in this repository's CI (CPU only)."""
    if device.type == "cuda" and device.index is None and world.distributed:
        return torch.device("cuda", world.local_rank % max(1, torch.cuda.device_count()))
    return device


def shutdown() -> None:
    """End the process group if this process started one (safe to call always)."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """The world torchrun asked for (``init_from_env``), for the body of a job; the group
    ends with the body (``process_group_ends_together``) unless a caller had started it
    already, and then ends with the caller's. One group serves all the jobs of a process
    (a search and the referee searches it trains first): ending a group and starting
    another in the same processes can hang the second rendezvous (it did, under load)."""
    started_here = not (dist.is_available() and dist.is_initialized())
    world = init_from_env(device)
    with process_group_ends_together(world, end=started_here):
        yield world


@contextmanager
def process_group_ends_together(world: World, *, end: bool = True) -> Iterator[None]:
    """Run a distributed job's body, then end the process group (unless ``end`` is false).
    After a body that finished, all ranks meet at a barrier first, so that none tears its
    group down while another still talks to it: without it a 2-process retraining whose
    work was done ended with "terminate called without an active exception" (SIGABRT) on
    rank 0 in about 1 run of 4. A body that raised skips the barrier (its peers may never
    reach it)."""
    try:
        yield
        if world.distributed and dist.is_initialized():
            dist.barrier()
    finally:
        if world.distributed and end:
            shutdown()


@contextmanager
def rank_zero_first(world: World) -> Iterator[None]:
    """Rank 0 runs the block first (builds a cache, a latency table); the others then
    run it and find the result on disk instead of racing to build it too."""
    if world.distributed and not world.is_writer:
        dist.barrier()
    yield
    if world.distributed and world.is_writer:
        dist.barrier()


def seed_per_rank(seed: int, world: World) -> None:
    """Give each rank its own torch random stream from here on (augmentation masks, dropout),
    derived from ``seed``; one process keeps its stream untouched."""
    if world.distributed:
        torch.manual_seed(seed * 1_000_003 + world.rank)


def broadcast_object(value: T, world: World) -> T:
    """Rank 0's ``value`` on every rank."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(values: list[T], world: World) -> list[T]:
    """Every rank's ``world.mine(items)``-shaped list, merged back into the order of ``items``."""
    if not world.distributed:
        return values
    parts: list[Any] = [None] * world.size
    dist.all_gather_object(parts, values)
    merged: list[T] = []
    for i in range(max(len(p) for p in parts)):
        merged += [p[i] for p in parts if i < len(p)]
    return merged


def _all_reduce_mean(tensors: list[torch.Tensor], world: World) -> None:
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def average_gradients(parameters: Iterable[nn.Parameter], world: World) -> None:
    """Replace every ``.grad`` by its mean over the ranks.

    Ranks may have trained different archs (``trainer.ddp_archs=per_rank``), so a
    parameter may have a gradient on some ranks only: a first all-reduce of one flag per
    parameter finds which have one anywhere; those get zeros where missing (a rank that
    did not use a weight contributes nothing, as in DDP with unused parameters) and are
    averaged in one all-reduce; a parameter no rank used keeps ``grad=None``.
    """
    if not world.distributed:
        return
    params = list(parameters)
    if not params:
        return
    device = params[0].device
    used = torch.tensor([float(p.grad is not None) for p in params], device=device)
    dist.all_reduce(used)
    grads = []
    for p, count in zip(params, used.tolist()):
        if count == 0:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    if grads:
        _all_reduce_mean(grads, world)


def average_buffers(module: nn.Module, world: World) -> None:
    """Average floating-point buffers (batch-norm running mean and variance) over the ranks."""
    if not world.distributed:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if buffers:
        _all_reduce_mean(buffers, world)


def broadcast_parameters(module: nn.Module, world: World) -> None:
    """Rank 0's parameters and buffers on every rank (a guard: they are seeded alike anyway)."""
    if not world.distributed:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def sum_over_ranks(values: Sequence[float], world: World, device: torch.device | None = None) -> list[float]:
    """Element-wise sums of ``values`` over the ranks (epoch loss and accuracy counts)."""
    if not world.distributed:
        return [float(v) for v in values]
    total = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return [float(v) for v in total.tolist()]


class ShardSampler(Sampler[int]):
    """Rank ``world.rank``'s positions of one epoch of ``length`` items: ``perm[rank::size]``
    of a permutation drawn from a generator seeded with ``seed`` (the same on every rank),
    or of ``0..length-1`` without ``shuffle``. Each pass over the sampler draws the next
    permutation (a loader reused for several epochs, as retraining does, gets a new
    order each epoch, like a shuffled ``DataLoader``). Shards differ in length by at most
    one; together they hold every position once (``DistributedSampler`` pads or drops to
    equal lengths instead). ``per_rank`` keeps only the first ``per_rank`` of each shard:
    the same number of whole batches on every rank when the last partial batch is dropped."""

    def __init__(self, length: int, world: World, *, seed: int, shuffle: bool = True,
                 per_rank: int | None = None) -> None:
        self.length, self.world, self.seed, self.shuffle = int(length), world, int(seed), shuffle
        self.per_rank = per_rank
        self._generator = torch.Generator().manual_seed(self.seed)

    def __iter__(self) -> Iterator[int]:
        order = (torch.randperm(self.length, generator=self._generator) if self.shuffle
                 else torch.arange(self.length))
        return iter(order[self.world.rank :: self.world.size][: len(self)].tolist())

    def __len__(self) -> int:
        shard = len(range(self.world.rank, self.length, self.world.size))
        return shard if self.per_rank is None else min(shard, self.per_rank)
