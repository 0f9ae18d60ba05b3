"""``prepare_dataset``: recordings -> windows -> log-mel cache (what ``melnas-prepare``
runs, and what later entry points call to make sure a cache is there).

Files are decoded and featurised in a process pool (``data.num_workers``, default: all
cores) in a fixed order, so the cache does not depend on the worker count. Unusable
files go to ``skipped.csv`` with their reason and its kind; when more than 10% of the
files are skipped, the summary says so loudly, per kind, with the setting to change
(files a ``data.format`` option leaves out are listed too, but do not count as problems).
Splits are drawn per recording (or taken from the data set's lists or folds) once the
usable recordings are known; normalisation statistics come from the train split. The
data card (``nas.data.card``) is written next to the cache and printed.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from nas.data import cache
from nas.data.card import build_card, card_markdown
from nas.data.duplicates import Copy, features_digest, find_copies, groups_with_copies_together, write_copies
from nas.data.errors import AudioDecodeError, DataError, SkipKind
from nas.data.examples import plot_examples
from nas.data.features import FeatureParams, file_features
from nas.data.manifest import Listing, Recording, Skipped
from nas.data.parallel import one_blas_thread, process_pool
from nas.data.report import PrepareReport, skip_lines
from nas.data.settings import PrepareSettings
from nas.data.splits import (
    SPLITS,
    FoldChoice,
    assign_splits,
    choose_folds,
    fold_splits,
)
from nas.io.lock import file_lock
from nas.progress import progress_bar

log = logging.getLogger(__name__)

BUILD_LOCK = ".build.lock"  # in the cache folder; held while a job builds the cache


@dataclass
class _FileResult:
    index: int
    features: np.ndarray | None = None
    offsets: np.ndarray | None = None
    seconds: float = 0.0
    kind: SkipKind | None = None
    reason: str | None = None


@dataclass
class _Built:
    """Per usable recording: its window rows in ``features.npy``."""

    recordings: list[Recording] = field(default_factory=list)
    rows: list[range] = field(default_factory=list)
    offsets: list[np.ndarray] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)  # seconds
    digests: list[str] = field(default_factory=list)  # of the features: equal for the same audio


def prepare_dataset(data: Mapping[str, Any], *, progress: bool = True) -> PrepareReport:
    """Make sure ``data.cache_dir`` holds the cache for ``data`` (the ``data`` config
    group); rebuild it when parameters or input files changed. When the inputs
    (``data.root`` or ``data.manifest``) are gone, a complete cache built with the same
    parameters is used as it is, and the log says that the inputs were not re-checked.
    Raises ``DataError`` with what to do when the data set cannot be used."""
    settings = PrepareSettings.from_config(data)
    unchecked = _cache_without_inputs(settings)
    if unchecked is not None:
        return unchecked
    listing = settings.read_listing()
    _require_two_classes(listing, settings)
    choose_folds([r.fold for r in listing.recordings], settings.test_fold,
                 settings.val_fold)  # a wrong data.test_fold stops before decoding
    fingerprint = cache.fingerprint(settings.identity(), listing.recordings)
    why = _why_build(settings, fingerprint)
    if why is None:
        return _report_from_meta(settings.cache_dir, cache.read_meta(settings.cache_dir))
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    # Jobs started together on a new cache (a sweep's or a study's searches) build it once:
    # the first holds the lock while it builds, the others then find it complete. Without
    # the lock each build's clearing deleted the other's half-written features.
    with file_lock(settings.cache_dir / BUILD_LOCK):
        why = _why_build(settings, fingerprint)
        if why is None:
            return _report_from_meta(settings.cache_dir, cache.read_meta(settings.cache_dir))
        log.info("building cache %s: %s", settings.cache_dir, why)
        return _build(settings, listing, fingerprint, why=why, progress=progress)


def prepare_for_run(data: Mapping[str, Any], *, progress: bool = True) -> PrepareReport:
    """``prepare_dataset`` for a command other than ``melnas-prepare`` (a search, a
    cross-validation) that may build the cache itself: a cache it built is reported in the
    log as ``melnas-prepare`` prints it, skipped files and warnings included."""
    report = prepare_dataset(data, progress=progress)
    if not report.reused and not report.unchecked:
        log.info("%s", report.summary())
    return report


def _why_build(settings: PrepareSettings, fingerprint: str) -> str | None:
    """Why the cache must be (re)built, or None when the complete cache there is current."""
    existing = cache.read_meta(settings.cache_dir)
    if existing is None or not (settings.cache_dir / cache.FEATURES).is_file():
        return "no complete cache there yet"
    if settings.rebuild:
        return "data.rebuild=true"
    if existing.get("fingerprint") != fingerprint:
        return "parameters or input files changed since it was built"
    return None


def _cache_without_inputs(settings: PrepareSettings) -> PrepareReport | None:
    """The complete cache's report when the inputs are missing and the cache was built
    with the same parameters; None when the inputs are there (or no cache can stand in,
    so that reading the inputs raises the usual error)."""
    key, source = (("data.manifest", settings.manifest) if settings.manifest
                   else ("data.root", settings.root))
    inputs = f"{key}={source}"
    if source.exists() or settings.rebuild:
        return None
    meta = cache.read_meta(settings.cache_dir)
    if meta is None or not (settings.cache_dir / cache.FEATURES).is_file():
        return None
    wanted = settings.identity()
    differ = {name: meta.get(name) for name, value in wanted.items() if meta.get(name) != value}
    if differ:
        shown = ", ".join(f"{name}={value!r} there, {wanted[name]!r} here"
                          for name, value in differ.items())
        raise DataError(
            f"{inputs} is missing, and the cache in {settings.cache_dir} was built with "
            f"other settings ({shown}): restore {key}, or set those data.* keys as the "
            "cache has them")
    built_from = meta.get("manifest") or meta.get("root")
    unchecked = (f"inputs were not re-checked: {inputs} is missing; using the complete "
                 f"cache in {settings.cache_dir} (built from {built_from})")
    log.warning("%s", unchecked)
    return _report_from_meta(settings.cache_dir, meta, unchecked=unchecked)


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
                skipped.append(Skipped(str(recording.path), result.kind, result.reason))
                continue
            built.recordings.append(recording)
            built.rows.append(range(writer.rows, writer.rows + result.features.shape[0]))
            built.offsets.append(result.offsets)
            built.durations.append(result.seconds)
            built.digests.append(features_digest(result.features))
            writer.append(result.features)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    cache.write_skipped(cache_dir, skipped)
    files = len(listing.recordings) + len(listing.skipped)
    skipped_kinds = dict(Counter(item.kind.value for item in skipped))
    _require_every_class(listing, built, cache_dir, skip_lines(skipped_kinds, files, params))
    labels = [r.label for r in built.recordings]
    copies = find_copies(built.digests)
    groups = groups_with_copies_together(built.recordings, copies)
    write_copies(cache_dir, built.recordings, copies)
    _warn_about_copies(built.recordings, copies, cache_dir)
    choice = choose_folds([r.fold for r in built.recordings], settings.test_fold,
                          settings.val_fold)
    if choice is None:
        splits = assign_splits(labels, groups, [r.split for r in built.recordings],
                               settings.splits, settings.seed)
    else:
        splits = fold_splits(labels, groups, [r.fold for r in built.recordings], choice,
                             settings.splits, settings.seed)
    class_names = listing.class_names
    features = np.load(cache_dir / cache.FEATURES, mmap_mode="r")
    rows = _index_rows(built, splits)
    cache.write_index(cache_dir, rows)
    train_rows = np.array([i for i, row in enumerate(rows) if row.split == "train"], dtype=np.int64)
    if train_rows.size == 0:
        raise DataError("the train split is empty: check data.root (NSynth: the folder "
                        "holding nsynth-train/), the manifest's split column, or data.splits")
    mean, std = cache.band_statistics(features, train_rows)
    durations = np.array(built.durations)
    card = build_card(labels=labels, groups=groups, splits=splits, seconds=built.durations,
                      windows=[len(r) for r in built.rows], class_names=class_names,
                      data_format=settings.data_format.identity(),
                      folds=_fold_dict(choice))
    write_card(cache_dir, card)
    report = PrepareReport(
        cache_dir=cache_dir, reused=False, class_names=class_names,
        recordings=_count(class_names, built.recordings, splits, [1] * len(splits)),
        windows=_count(class_names, built.recordings, splits, [len(r) for r in built.rows]),
        minutes=float(durations.sum()) / 60, skipped=len(skipped), features=params,
        files=files, skipped_kinds=skipped_kinds,
        clip_seconds=tuple(float(v) for v in np.percentile(durations, [10, 50, 90])),
        padded=int(np.count_nonzero(np.round(durations * params.sample_rate)
                                     < params.window_samples)),
        input_shape=params.input_shape, why=why, card=card)
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
        "fold_choice": _fold_dict(choice),
        "fingerprint": fingerprint,
        "counts": report.to_dict(),
        "card": card,
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
        return _FileResult(index, kind=error.kind, reason=str(error))
    except Exception as error:  # noqa: BLE001 - one odd file must not stop the data set
        return _FileResult(index, kind=SkipKind.UNEXPECTED,
                           reason=f"unexpected {type(error).__name__}: {error}")
    return _FileResult(index, features, offsets, seconds)


def _warn_about_copies(recordings: Sequence[Recording], copies: Sequence[Copy], cache_dir: Path) -> None:
    if not copies:
        return
    shown = "; ".join(f"{recordings[c.index].path} = {recordings[c.original].path}" for c in copies[:3])
    log.warning("%d recording(s) are copies of another (the same audio), kept in the same split as it "
                "(unless the data set fixes the splits); remove them to count each recording once. "
                "All in %s; e.g. %s", len(copies), cache_dir / cache.DUPLICATES, shown)
    relabelled = [c for c in copies if not c.same_label(recordings)]
    if relabelled:
        shown = "; ".join(f"{recordings[c.index].path} ({recordings[c.index].label}) = "
                          f"{recordings[c.original].path} ({recordings[c.original].label})" for c in relabelled[:3])
        log.warning("%d of them carry another label than their original: the same audio cannot be "
                    "both; fix the labels. E.g. %s", len(relabelled), shown)


def _require_two_classes(listing: Listing, settings: PrepareSettings) -> None:
    """Raise ``DataError`` for a data set of fewer than 2 classes: everything downstream
    would run and report a meaningless accuracy of 1.0."""
    names = listing.class_names
    if len(names) >= 2:
        return
    source = (f"data.manifest={settings.manifest}" if settings.manifest
              else f"data.root={settings.root}")
    found = f"1 class ({names[0]})" if names else "no class"
    raise DataError(
        f"{source} has {found}: a classifier needs at least 2 classes; "
        "add one folder per class (or, in a manifest, rows with 2 or more labels)")


def _require_every_class(listing: Listing, built: _Built, cache_dir: Path,
                         skips: Sequence[str]) -> None:
    """Raise ``DataError`` naming the classes left without a recording, and why files
    were skipped (``skips``: ``skip_lines``)."""
    usable = {recording.label for recording in built.recordings}
    empty = [name for name in listing.class_names if name not in usable]
    if empty:
        raise DataError(
            f"class(es) {empty} have no usable recording: every file of theirs was skipped "
            f"(reasons in {cache_dir / cache.SKIPPED}); fix or replace those files, or "
            "remove the class. Skipped, by reason:\n" + "\n".join(f"  {line}" for line in skips)
        )


def _index_rows(built: _Built, splits: Sequence[str]) -> list[cache.IndexRow]:
    rows = []
    for recording, split, offsets in zip(built.recordings, splits, built.offsets):
        for offset in offsets:
            rows.append(cache.IndexRow(recording.source, recording.label, split,
                                       recording.group, float(offset), str(recording.path),
                                       recording.fold))
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


def _report_from_meta(cache_dir: Path, meta: Mapping[str, Any], *,
                      unchecked: str = "") -> PrepareReport:
    counts = meta["counts"]
    return PrepareReport(cache_dir=cache_dir, reused=True,
                         class_names=list(meta["class_names"]),
                         recordings=counts["recordings"], windows=counts["windows"],
                         minutes=counts["minutes"], skipped=counts["skipped"],
                         features=FeatureParams.from_mapping(meta), files=counts["files"],
                         skipped_kinds=counts["skipped_kinds"],
                         clip_seconds=tuple(counts["clip_seconds"]), padded=counts["padded"],
                         seconds=0.0, input_shape=tuple(meta["input_shape"]),
                         unchecked=unchecked, card=meta["card"])


def write_card(cache_dir: Path, card: Mapping[str, Any]) -> None:
    """``data_card.json`` and ``data_card.md`` in ``cache_dir``."""
    (cache_dir / cache.CARD_JSON).write_text(json.dumps(card, indent=2, ensure_ascii=False),
                                             encoding="utf-8")
    (cache_dir / cache.CARD_MD).write_text(card_markdown(card, str(cache_dir)),
                                           encoding="utf-8")


def _fold_dict(choice: FoldChoice | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    return {"folds": list(choice.folds), "test_fold": choice.test_fold,
            "val_fold": choice.val_fold}
