"""Standalone trainings of ``melnas-rank``: one short fixed recipe per arch, cached.

A cache entry is ``<cache_dir>/<arch hash>-<key>.json`` where the key hashes everything
that decides the result besides the arch: the recipe (``train=rank``, optimizer
included), the space config, the data cache's identity and the training seed. A changed
recipe or data set therefore trains afresh, and so does an arch whose network changed (the
entry records a digest of the standalone network's structure: a space's code edited
since, same arch hash); a killed rank run keeps every finished entry
(each is written atomically when its training ends), and a later call with more archs
trains only the new ones. Trainings run in ``jobs`` worker processes, each with
``cores // jobs`` torch threads.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from nas.data.dataset import make_loader, open_prepared
from nas.evaluate.accuracy import top1_accuracy
from nas.io.atomic import atomic_write_json
from nas.io.model_file import build_network, to_plain
from nas.runtime import resolve_device, torch_threads
from nas.train.job import TrainSettings
from nas.train.loop import fit


@dataclass(frozen=True)
class StandaloneJob:
    """One arch to train: everything a worker process needs (plain data and a factory)."""

    arch_json: dict[str, Any]
    space_config: dict[str, Any]
    cache_dir: str  # the prepared data
    train: TrainSettings
    optimizer_factory: Callable[..., torch.optim.Optimizer]
    seed: int
    device: str
    threads: int
    entry: str  # the cache file this training writes
    network: str  # network_digest of the arch's standalone build: an entry of another network is stale


def network_digest(model: torch.nn.Module) -> str:
    """A digest of a network's structure (its modules' types and settings, as ``repr``
    prints them): the same arch hash built by edited space code gives another digest."""
    return hashlib.sha1(repr(model).encode()).hexdigest()[:12]


def entry_key(*, train: TrainSettings, space_config: Mapping[str, Any], data_id: str, seed: int) -> str:
    """The part of a cache entry's name shared by every arch of one recipe, space and data set."""
    recipe = {"train": to_plain(asdict(train)), "space": to_plain(dict(space_config)), "data": data_id, "seed": seed}
    return hashlib.sha1(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]


def entry_path(cache: Path, arch_hash: str, key: str) -> Path:
    return cache / f"{arch_hash}-{key}.json"


def train_standalone(job: StandaloneJob) -> dict[str, Any]:
    """Train one arch from scratch; write and return its cache entry (val and test accuracy
    of the best validation epoch, epochs run, seconds)."""
    with torch_threads(job.threads):
        torch.manual_seed(job.seed)
        device = resolve_device(job.device)
        data = open_prepared(job.cache_dir)
        space, arch, model = build_network(
            job.space_config, job.arch_json, num_classes=data.num_classes, input_shape=data.input_shape
        )
        train = job.train
        loader = make_loader(data, "train", batch_size=train.batch_size, shuffle=True, seed=job.seed, drop_last=True)
        val = make_loader(data, "val", batch_size=train.eval_batch_size, shuffle=False)
        result = fit(model, train_loader=loader, val_loader=val, optimizer_factory=job.optimizer_factory,
                     recipe=train.recipe(), augment=train.spec_augment.build(), device=device,
                     batch_setting=None)  # run_rank warns once for all the trainings
        model.eval()
        test = make_loader(data, "test", batch_size=train.eval_batch_size, shuffle=False)
        entry = {
            "hash": arch.hash, "arch": arch.to_json_dict(), "arch_str": space.arch_string(arch),
            "val_accuracy": result.best_val_accuracy,
            "test_accuracy": top1_accuracy(model, test, device=device),
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "seconds": result.seconds,
            "network": job.network,
        }
    atomic_write_json(job.entry, entry)
    return entry


def train_missing(jobs: Sequence[StandaloneJob], *, processes: int,
                  on_done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """The entry of every job, training those whose cache file is missing or holds another
    network (in ``processes`` spawned workers when > 1). Results come back in the order of
    ``jobs``. An entry written before entries recorded their network is taken as it is."""
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for job in jobs:
        cached = stored_entry(job)
        if cached is not None:
            results[job.entry] = cached
        else:
            todo.append(job)
    if processes > 1 and len(todo) > 1:
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            for job, entry in zip(todo, pool.map(train_standalone, todo)):
                results[job.entry] = entry
                if on_done is not None:
                    on_done(entry)
    else:
        for job in todo:
            results[job.entry] = train_standalone(job)
            if on_done is not None:
                on_done(results[job.entry])
    return [results[job.entry] for job in jobs]


def stored_entry(job: StandaloneJob) -> dict[str, Any] | None:
    """``job``'s cache entry when it holds this network's result; None when it must train."""
    path = Path(job.entry)
    if not path.is_file():
        return None
    entry = json.loads(path.read_text())
    return entry if entry.get("network", job.network) == job.network else None


def threads_per_job(processes: int) -> int:
    """Torch threads for each of ``processes`` concurrent trainings: cores // processes, >= 1."""
    return max(1, (os.cpu_count() or 1) // max(1, processes))
