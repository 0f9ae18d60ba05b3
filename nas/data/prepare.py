"""``prepare_dataset``: recordings -> windows -> log-mel cache (what ``melnas-prepare``
runs, and what later entry points call to make sure a cache is there).

Files are decoded and featurised in a process pool (``data.num_workers``, default: all
cores) in a fixed order, so the cache does not depend on the worker count. Unusable
files go to ``skipped.csv`` with their reason. Splits are drawn per recording once the
usable recordings are known; normalisation statistics come from the train split.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from nas.data import cache
from nas.data.errors import AudioDecodeError, DataError
from nas.data.examples import plot_examples
from nas.data.features import FeatureParams, file_features
from nas.data.manifest import Listing, Recording, Skipped, read_manifest, scan_folder
from nas.data.parallel import available_cores, one_blas_thread, process_pool
from nas.data.splits import SPLITS, SplitRatios, assign_splits
from nas.progress import progress_bar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareSettings:
    """The ``data`` config group, checked. Only ``features``, ``splits``, ``seed`` and the
    inputs decide the cache; ``num_workers`` and ``rebuild`` only decide how it is made."""

    root: Path | None
    manifest: Path | None
    cache_dir: Path
    features: FeatureParams
    splits: SplitRatios
    seed: int = 0
    num_workers: int | None = None
    rebuild: bool = False

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> PrepareSettings:
        manifest = data.get("manifest")
        root = data.get("root")
        if not manifest and not root:
            raise DataError("set data.root (one folder per class) or data.manifest (a CSV)")
        if not data.get("cache_dir"):
            raise DataError("set data.cache_dir: the folder the prepared cache is written to")
        if root and not manifest and Path(data["cache_dir"]).expanduser().resolve() \
                .is_relative_to(Path(root).expanduser().resolve()):
            raise DataError(f"data.cache_dir={data['cache_dir']} is inside data.root={root}, "
                            "where it would be read as a class: put the cache elsewhere")
        workers = data.get("num_workers")
        if workers is not None and int(workers) < 0:
            raise DataError(f"data.num_workers={workers} is invalid: expected >= 0 or null")
        return cls(
            root=Path(root).expanduser() if root and not manifest else None,
            manifest=Path(manifest).expanduser() if manifest else None,
            cache_dir=Path(data["cache_dir"]).expanduser(),
            features=FeatureParams.from_mapping(data),
            splits=SplitRatios.from_mapping(data.get("splits") or {}),
            seed=int(data.get("seed", 0)),
            num_workers=None if workers is None else int(workers),
            rebuild=bool(data.get("rebuild", False)),
        )

    def identity(self) -> dict[str, Any]:
        """What, besides the input files, makes the cache what it is."""
        return {"format_version": cache.FORMAT_VERSION, **self.features.to_dict(),
                "splits": self.splits.as_dict(), "seed": self.seed}

    @property
    def workers(self) -> int:
        return available_cores() if self.num_workers is None else self.num_workers


@dataclass
class PrepareReport:
    """What a prepare run produced (or found already there, ``reused=True``)."""

    cache_dir: Path
    reused: bool
    class_names: list[str]
    recordings: dict[str, dict[str, int]]  # class -> split -> recordings
    windows: dict[str, dict[str, int]]  # class -> split -> windows
    minutes: float
    skipped: int
    seconds: float = 0.0
    input_shape: tuple[int, int, int] = (1, 0, 0)
    why: str = ""  # why it was (re)built

    def totals(self, table: dict[str, dict[str, int]]) -> dict[str, int]:
        return {split: sum(row.get(split, 0) for row in table.values()) for split in SPLITS}

    def summary(self) -> str:
        """A human-readable table: recordings and windows per class and split."""
        action = ("reused: inputs and parameters unchanged (data.rebuild=true forces a "
                  "rebuild)" if self.reused else f"built in {self.seconds:.1f} s ({self.why})")
        lines = [f"cache {self.cache_dir}: {action}",
                 f"{len(self.class_names)} classes, "
                 f"{sum(self.totals(self.recordings).values())} recordings, "
                 f"{self.minutes:.1f} minutes of audio, input shape {self.input_shape}",
                 f"{'class':<20}{'recordings train/val/test':>28}{'windows train/val/test':>26}"]
        for name in self.class_names + ["total"]:
            recordings = self.totals(self.recordings) if name == "total" else self.recordings[name]
            windows = self.totals(self.windows) if name == "total" else self.windows[name]
            lines.append(f"{name:<20}{_triple(recordings):>28}{_triple(windows):>26}")
        lines.append(f"skipped files: {self.skipped} (see {self.cache_dir / cache.SKIPPED})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"recordings": self.recordings, "windows": self.windows,
                "minutes": self.minutes, "skipped": self.skipped}


def _triple(counts: Mapping[str, int]) -> str:
    return "/".join(str(counts.get(split, 0)) for split in SPLITS)


@dataclass
class _FileResult:
    index: int
    features: np.ndarray | None = None
    offsets: np.ndarray | None = None
    seconds: float = 0.0
    reason: str | None = None


@dataclass
class _Built:
    """Per usable recording: its window rows in ``features.npy``."""

    recordings: list[Recording] = field(default_factory=list)
    rows: list[range] = field(default_factory=list)
    offsets: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0


def prepare_dataset(data: Mapping[str, Any], *, progress: bool = True) -> PrepareReport:
    """Make sure ``data.cache_dir`` holds the cache for ``data`` (the ``data`` config
    group); rebuild it when parameters or input files changed. Raises ``DataError``
    with what to do when the data set cannot be used."""
    settings = PrepareSettings.from_config(data)
    listing = read_manifest(settings.manifest) if settings.manifest else \
        scan_folder(settings.root)
    fingerprint = cache.fingerprint(settings.identity(), listing.recordings)
    existing = cache.read_meta(settings.cache_dir)
    if existing is None or not (settings.cache_dir / cache.FEATURES).is_file():
        why = "no complete cache there yet"
    elif settings.rebuild:
        why = "data.rebuild=true"
    elif existing.get("fingerprint") != fingerprint:
        why = "parameters or input files changed since it was built"
    else:
        return _report_from_meta(settings.cache_dir, existing)
    log.info("building cache %s: %s", settings.cache_dir, why)
    return _build(settings, listing, fingerprint, why=why, progress=progress)


def _build(settings: PrepareSettings, listing: Listing, fingerprint: str, *, why: str,
           progress: bool) -> PrepareReport:
    started = time.perf_counter()
    cache_dir = settings.cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache.clear(cache_dir)
    params = settings.features
    skipped = list(listing.skipped)
    built = _Built()
    writer = cache.FeatureWriter(cache_dir / cache.FEATURES, params.n_mels, params.frames)
    try:
        results = _featurise_all(listing.recordings, params, settings.workers)
        for result in progress_bar(results, total=len(listing.recordings), desc="melnas-prepare",
                                   unit="file", enabled=progress):
            recording = listing.recordings[result.index]
            if result.reason is not None:
                skipped.append(Skipped(str(recording.path), result.reason))
                continue
            built.recordings.append(recording)
            built.rows.append(range(writer.rows, writer.rows + result.features.shape[0]))
            built.offsets.append(result.offsets)
            built.seconds += result.seconds
            writer.append(result.features)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    cache.write_skipped(cache_dir, skipped)
    _require_every_class(listing, built, cache_dir)
    splits = assign_splits([r.label for r in built.recordings],
                           [r.group for r in built.recordings],
                           [r.split for r in built.recordings], settings.splits, settings.seed)
    class_names = listing.class_names
    features = np.load(cache_dir / cache.FEATURES, mmap_mode="r")
    rows = _index_rows(built, splits)
    cache.write_index(cache_dir, rows)
    train_rows = np.array([i for i, row in enumerate(rows) if row.split == "train"], dtype=np.int64)
    if train_rows.size == 0:
        raise DataError("the train split is empty: check the manifest's split column or "
                        "data.splits")
    mean, std = cache.band_statistics(features, train_rows)
    report = PrepareReport(
        cache_dir=cache_dir, reused=False, class_names=class_names,
        recordings=_count(class_names, built.recordings, splits, [1] * len(splits)),
        windows=_count(class_names, built.recordings, splits, [len(r) for r in built.rows]),
        minutes=built.seconds / 60, skipped=len(skipped), input_shape=params.input_shape,
        why=why)
    _plot(cache_dir / cache.EXAMPLES, class_names, features, rows, params)
    report.seconds = time.perf_counter() - started
    meta = {
        **settings.identity(),
        "frames": params.frames,
        "input_shape": list(params.input_shape),
        "class_names": class_names,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "root": str(settings.root.resolve()) if settings.root else None,
        "manifest": str(settings.manifest.resolve()) if settings.manifest else None,
        "fingerprint": fingerprint,
        "counts": report.to_dict(),
        "build_seconds": round(report.seconds, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    cache.write_meta(cache_dir, meta)
    return report


def _featurise_all(recordings: Sequence[Recording], params: FeatureParams,
                   workers: int) -> Iterator[_FileResult]:
    """Results in input order, from a process pool when ``workers > 1``."""
    tasks = [(index, str(recording.path), params) for index, recording in enumerate(recordings)]
    if workers <= 1 or len(tasks) < 2:
        with one_blas_thread():
            yield from map(_featurise_one, tasks)
        return
    workers = min(workers, len(tasks))
    chunk = max(1, min(16, len(tasks) // (workers * 8)))
    with process_pool(workers, preload=__name__) as pool:
        yield from pool.imap(_featurise_one, tasks, chunksize=chunk)


def _featurise_one(task: tuple[int, str, FeatureParams]) -> _FileResult:
    index, path, params = task
    try:
        features, offsets, seconds = file_features(path, params)
    except AudioDecodeError as error:
        return _FileResult(index, reason=str(error))
    except Exception as error:  # noqa: BLE001 - one odd file must not stop the data set
        return _FileResult(index, reason=f"unexpected {type(error).__name__}: {error}")
    return _FileResult(index, features, offsets, seconds)


def _require_every_class(listing: Listing, built: _Built, cache_dir: Path) -> None:
    usable = {recording.label for recording in built.recordings}
    empty = [name for name in listing.class_names if name not in usable]
    if empty:
        raise DataError(
            f"class(es) {empty} have no usable recording: every file of theirs was skipped "
            f"(reasons in {cache_dir / cache.SKIPPED}); fix or replace those files, or "
            "remove the class"
        )


def _index_rows(built: _Built, splits: Sequence[str]) -> list[cache.IndexRow]:
    rows = []
    for recording, split, offsets in zip(built.recordings, splits, built.offsets):
        for offset in offsets:
            rows.append(cache.IndexRow(recording.source, recording.label, split,
                                       recording.group, float(offset), str(recording.path)))
    return rows


def _count(class_names: Sequence[str], recordings: Sequence[Recording],
           splits: Sequence[str], amounts: Sequence[int]) -> dict[str, dict[str, int]]:
    table: dict[str, Counter] = defaultdict(Counter)
    for recording, split, amount in zip(recordings, splits, amounts):
        table[recording.label][split] += amount
    return {name: {split: table[name][split] for split in SPLITS} for name in class_names}


def _plot(path: Path, class_names: Sequence[str], features: np.ndarray,
          rows: Sequence[cache.IndexRow], params: FeatureParams) -> None:
    """The middle window of each class's first train recording (else its first one)."""
    windows_of: dict[tuple[str, str], list[int]] = defaultdict(list)
    for number, row in enumerate(rows):
        windows_of[(row.label, row.source)].append(number)
    picks = []
    for name in class_names:
        candidates = [numbers for (label, _), numbers in windows_of.items() if label == name]
        train = [numbers for numbers in candidates if rows[numbers[0]].split == "train"]
        numbers = (train or candidates)[0]
        picks.append(numbers[len(numbers) // 2])
    plot_examples(path, class_names, [features[i] for i in picks],
                  [f"{Path(rows[i].source).name} @ {rows[i].offset_seconds:.1f} s" for i in picks],
                  frame_hop_seconds=params.frame_hop_seconds)


def _report_from_meta(cache_dir: Path, meta: Mapping[str, Any]) -> PrepareReport:
    counts = meta["counts"]
    return PrepareReport(cache_dir=cache_dir, reused=True,
                         class_names=list(meta["class_names"]),
                         recordings=counts["recordings"], windows=counts["windows"],
                         minutes=counts["minutes"], skipped=counts["skipped"],
                         seconds=0.0, input_shape=tuple(meta["input_shape"]))
