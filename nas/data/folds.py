"""Fold views: the same prepared features, split with another test fold.

Cross-validation trains once per fold. The log-mel features do not depend on the fold,
so each fold gets a view instead of a new cache: a folder with its own ``index.csv``
(the splits for that test fold), ``meta.json`` (train-split normalisation statistics of
that fold, ``features_file`` naming the shared features) and nothing else. A view opens
with ``open_prepared`` like any cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nas.data import cache
from nas.data.errors import DataError
from nas.data.splits import SplitRatios, choose_folds, fold_splits


def cache_folds(cache_dir: Path) -> list[int]:
    """The folds of a prepared cache (empty when its data set has none)."""
    meta = cache.read_meta(Path(cache_dir))
    if meta is None:
        raise DataError(f"no prepared data in {cache_dir}: run melnas-prepare first")
    choice = meta.get("fold_choice")
    return list(choice["folds"]) if choice else []


def fold_view(cache_dir: Path, out_dir: Path, *, test_fold: int,
              val_fold: int | None = None) -> Path:
    """Write the view of ``cache_dir`` with ``test_fold`` as test (and ``val_fold`` as
    val, else val drawn from the other folds with the cache's ``splits`` and ``seed``)
    into ``out_dir``; returns ``out_dir``."""
    cache_dir, out_dir = Path(cache_dir).resolve(), Path(out_dir)
    meta = cache.read_meta(cache_dir)
    if meta is None:
        raise DataError(f"no prepared data in {cache_dir}: run melnas-prepare first")
    rows = cache.read_index(cache_dir)
    recordings: dict[str, cache.IndexRow] = {}
    for row in rows:
        recordings.setdefault(row.source, row)
    sources = list(recordings)
    folds = [recordings[s].fold for s in sources]
    choice = choose_folds(folds, test_fold, val_fold)
    if choice is None:
        raise DataError(f"the data set in {cache_dir} has no folds: cross-validation needs "
                        "a data set with folds (esc50, urbansound8k, fsdd split=speaker, a "
                        "manifest with a fold column)")
    splits = fold_splits([recordings[s].label for s in sources],
                         [recordings[s].group for s in sources], folds, choice,
                         SplitRatios.from_mapping(meta["splits"]), int(meta["seed"]))
    split_of = dict(zip(sources, splits))
    view_rows = [cache.IndexRow(r.source, r.label, split_of[r.source], r.group,
                                r.offset_seconds, r.path, r.fold) for r in rows]
    features_file = cache.features_path(cache_dir, meta)
    features = np.load(features_file, mmap_mode="r")
    train = np.array([i for i, r in enumerate(view_rows) if r.split == "train"], dtype=np.int64)
    mean, std = cache.band_statistics(features, train)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache.write_index(out_dir, view_rows)
    view_meta = {key: value for key, value in meta.items() if key not in ("counts", "card")}
    view_meta.update({
        "mean": [float(v) for v in mean], "std": [float(v) for v in std],
        "test_fold": choice.test_fold, "val_fold": choice.val_fold,
        "fold_choice": {"folds": list(choice.folds), "test_fold": choice.test_fold,
                        "val_fold": choice.val_fold},
        "features_file": str(features_file.resolve()), "view_of": str(cache_dir),
    })
    cache.write_meta(out_dir, view_meta)
    return out_dir
