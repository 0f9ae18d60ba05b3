"""Reading a prepared cache: ``open_prepared`` and ``make_loader``.

The features stay on disk: every dataset opens ``features.npy`` memory-mapped (in each
loader worker separately) and reads one batch of rows at a time; normalisation with
the train statistics happens as rows are read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nas.data import cache
from nas.data.errors import DataError
from nas.data.features import normalise
from nas.data.splits import SPLITS
from nas.distributed import ShardSampler, World

Transform = Callable[[torch.Tensor], torch.Tensor]

# Meta keys of a data cache that do not change its content.
VOLATILE_META = ("build_seconds", "created", "root", "card")
# Meta keys that change with where, when and on which machine the recordings were read,
# not with which recordings a model learns from: their paths and modification times (the
# input fingerprint, a manifest's path) and the features' float statistics, whose last
# bits differ between BLAS builds.
MACHINE_META = ("fingerprint", "manifest", "mean", "std")


@dataclass
class PreparedData:
    """A prepared cache. ``labels`` (int64 ``[windows]``) and ``splits`` (str
    ``[windows]``) describe the rows of the memory-mapped features."""

    cache_dir: Path
    class_names: list[str]
    input_shape: tuple[int, int, int]
    meta: dict[str, Any]
    labels: np.ndarray
    splits: np.ndarray
    sources: np.ndarray
    _features: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.meta["mean"], dtype=np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.meta["std"], dtype=np.float32)

    @property
    def features(self) -> np.ndarray:
        """float16 ``[windows, n_mels, frames]``, memory-mapped (read-only)."""
        if self._features is None:
            self._features = np.load(self.features_path, mmap_mode="r")
        return self._features

    @property
    def identity(self) -> str:
        """A digest of the cache's meta (settings, input fingerprint, splits' counts, train
        statistics), build time and location left out: changes whenever the cache is built
        from other inputs, touched or moved recordings included (the key of melnas-rank's
        cache of standalone trainings)."""
        kept = {k: v for k, v in self.meta.items() if k not in VOLATILE_META}
        return _digest(kept)

    @property
    def split_identity(self) -> str:
        """A digest of what a model trained on this cache saw: the feature settings, the
        classes, and which recording's windows lie in which split. Unlike ``identity`` it
        survives touching, moving or copying the recordings to another machine; it changes
        when another ``data.seed``, other split settings or added or removed recordings
        give other splits."""
        settings = {k: v for k, v in self.meta.items() if k not in VOLATILE_META + MACHINE_META}
        return _digest({"settings": settings, "sources": self.sources.tolist(), "labels": self.labels.tolist(),
                        "splits": self.splits.tolist()})

    @property
    def features_path(self) -> Path:
        return cache.features_path(self.cache_dir, self.meta)

    def rows(self, split: str) -> np.ndarray:
        """Row numbers (int64) of ``split`` in the features array."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not one of {list(SPLITS)}")
        return np.flatnonzero(self.splits == split).astype(np.int64)


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def open_prepared(cache_dir: str | Path) -> PreparedData:
    """Open the cache made by ``melnas-prepare``; ``DataError`` if it is missing,
    incomplete or of another format version."""
    cache_dir = Path(cache_dir).expanduser()
    rerun = (f"run `melnas-prepare data.root=<your folder> data.cache_dir={cache_dir}` "
             "(add data.rebuild=true to force a fresh build)")
    meta = cache.read_meta(cache_dir)
    if meta is None:
        raise DataError(f"no prepared data in {cache_dir} (meta.json missing or unreadable): "
                        f"{rerun}")
    if meta.get("format_version") != cache.FORMAT_VERSION:
        raise DataError(f"the cache in {cache_dir} has format version "
                        f"{meta.get('format_version')}, this melnas reads "
                        f"{cache.FORMAT_VERSION}: {rerun}")
    try:
        index = cache.read_index(cache_dir)
        features = np.load(cache.features_path(cache_dir, meta), mmap_mode="r")
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"the cache in {cache_dir} is incomplete ({error}): {rerun}") from error
    input_shape = tuple(int(v) for v in meta["input_shape"])
    if features.shape != (len(index), *input_shape[1:]):
        raise DataError(f"the cache in {cache_dir} is inconsistent: features {features.shape} "
                        f"for {len(index)} index rows of shape {input_shape[1:]}: {rerun}")
    class_names = list(meta["class_names"])
    label_of = {name: number for number, name in enumerate(class_names)}
    return PreparedData(
        cache_dir=cache_dir,
        class_names=class_names,
        input_shape=input_shape,  # type: ignore[arg-type]
        meta=meta,
        labels=np.array([label_of[row.label] for row in index], dtype=np.int64),
        splits=np.array([row.split for row in index]),
        sources=np.array([row.source for row in index]),
        _features=features,
    )


class WindowDataset(Dataset):
    """Normalised windows of some rows of a cache: item ``i`` is
    ``(float32 [1, n_mels, frames], int label)``.

    Picklable (it stores the file path, not the memory map), so it works in
    loader worker processes; each process opens its own map.
    """

    def __init__(self, features_path: Path, rows: np.ndarray, labels: np.ndarray,
                 mean: np.ndarray, std: np.ndarray, transform: Transform | None = None) -> None:
        self.features_path, self.rows, self.labels = features_path, rows, labels
        self.mean, self.std, self.transform = mean, std, transform
        self._features: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_features": None}

    def _read(self, positions: list[int]) -> torch.Tensor:
        """float32 ``[len(positions), 1, n_mels, frames]`` read in one sorted gather."""
        if self._features is None:
            self._features = np.load(self.features_path, mmap_mode="r")
        wanted = self.rows[positions]
        order = np.argsort(wanted, kind="stable")
        block = np.empty((len(positions), *self._features.shape[1:]), dtype=np.float16)
        block[order] = self._features[wanted[order]]
        return torch.from_numpy(normalise(block, self.mean, self.std)[:, None])

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int]:
        return self.__getitems__([position])[0]

    def __getitems__(self, positions: list[int]) -> list[tuple[torch.Tensor, int]]:
        block = self._read(list(positions))
        items = []
        for x, position in zip(block, positions):
            x = self.transform(x) if self.transform is not None else x
            items.append((x, int(self.labels[self.rows[position]])))
        return items


def make_loader(data: PreparedData, split: str, *, batch_size: int, shuffle: bool,
                seed: int = 0, drop_last: bool = False, num_workers: int = 0,
                transform: Transform | None = None, shard: World | None = None,
                pin_memory: bool = False) -> DataLoader:
    """Batches ``(x float32 [B, 1, n_mels, frames], y int64 [B])`` of ``split``.

    With ``shuffle`` the order comes from a generator seeded with ``seed``: the same
    seed gives the same sequence of epochs. ``transform`` maps one normalised window
    ``[1, n_mels, frames]`` to another (augmentation).

    ``shard`` (a distributed ``World``): only this rank's share of each epoch
    (``nas.distributed.ShardSampler``, the permutations seeded with ``seed``; ``batch_size``
    is then the per-rank batch); one process (or ``None``) reads the whole split exactly
    as before. ``pin_memory``
    (for a CUDA device) lets ``.to(device, non_blocking=True)`` overlap the copy.
    """
    rows = data.rows(split)
    if rows.size == 0:
        raise DataError(f"split {split!r} of {data.cache_dir} has no windows: it needs "
                        "more recordings per class, or other data.splits ratios")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is invalid: expected >= 1")
    dataset = WindowDataset(data.features_path, rows, data.labels, data.mean,
                            data.std, transform)
    generator = torch.Generator().manual_seed(seed)
    if shard is not None and shard.distributed:
        # ``batch_size`` is this rank's share of the global batch; with ``drop_last`` every
        # rank takes the steps of one process: len // (batch_size * ranks) whole batches.
        per_rank = len(dataset) // (batch_size * shard.size) * batch_size if drop_last else None
        sampler = ShardSampler(len(dataset), shard, seed=seed, shuffle=shuffle, per_rank=per_rank)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=num_workers, generator=generator, pin_memory=pin_memory,
                          persistent_workers=num_workers > 0)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=num_workers, generator=generator, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0)
