"""The on-disk cache of a prepared data set.

``cache_dir/``
  ``features.npy``  float16 ``[windows, n_mels, frames]``, read memory-mapped
  ``index.csv``     one row per window: ``source,label,split,group,offset_seconds,path,fold``
                    (``fold`` empty when the data set has no folds)
  ``meta.json``     every parameter, class names, train-split normalisation stats,
                    counts and the input fingerprint; written last, so a cache without
                    it is incomplete
  ``skipped.csv``   ``path,kind,reason`` for every file that was not used (``kind``: a
                    ``SkipKind`` value, to group them)
  ``examples.png``  one log-mel picture per class
  ``data_card.json``, ``data_card.md``  recordings, windows, groups, minutes and clip
                    lengths per class and split (``nas.data.card``)

A fold view (``nas.data.folds``) is a cache folder without its own features: its
``meta.json`` names the features file it reads (``features_file``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from nas.data.manifest import Recording, Skipped
from nas.io.atomic import AtomicFile, atomic_write_json

FORMAT_VERSION = 2
FEATURES = "features.npy"
INDEX = "index.csv"
META = "meta.json"
SKIPPED = "skipped.csv"
DUPLICATES = "duplicates.csv"  # copies of a recording, the same audio (nas/data/duplicates.py)
EXAMPLES = "examples.png"
CARD_JSON = "data_card.json"
CARD_MD = "data_card.md"
INDEX_COLUMNS = ("source", "label", "split", "group", "offset_seconds", "path", "fold")
_HEADER_BYTES = 128  # an .npy v1.0 header for any 3-d float16 shape pads to 128 bytes


@dataclass(frozen=True)
class IndexRow:
    source: str
    label: str
    split: str
    group: str
    offset_seconds: float
    path: str
    fold: int | None = None


def fingerprint(settings: dict[str, Any], recordings: Sequence[Recording]) -> str:
    """Hash of the parameters and of every input file's identity (path, label, group,
    fixed split, fold, size, modification time): any change means a rebuild."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8"))
    for recording in recordings:
        stat = recording.path.stat()
        entry = (str(recording.path.resolve()), recording.source, recording.label,
                 recording.group, recording.split, recording.fold, stat.st_size,
                 stat.st_mtime_ns)
        digest.update(json.dumps(entry).encode("utf-8"))
    return digest.hexdigest()


def read_meta(cache_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((cache_dir / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_meta(cache_dir: Path, meta: dict[str, Any]) -> None:
    """Write atomically: a reader never sees a half-written meta file."""
    atomic_write_json(cache_dir / META, meta, indent=2, ensure_ascii=False, trailing_newline=False)


def clear(cache_dir: Path) -> None:
    """Remove a previous build's files (meta first, so a crash leaves no valid cache)."""
    for name in (META, FEATURES, INDEX, SKIPPED, DUPLICATES, EXAMPLES, CARD_JSON, CARD_MD,
                 FEATURES + ".tmp"):
        (cache_dir / name).unlink(missing_ok=True)
    for stale in cache_dir.glob(f".{FEATURES}.*.tmp"):  # left by a killed build (nas.io.atomic)
        stale.unlink(missing_ok=True)


def write_index(cache_dir: Path, rows: Iterable[IndexRow]) -> None:
    with (cache_dir / INDEX).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(INDEX_COLUMNS)
        for row in rows:
            writer.writerow((row.source, row.label, row.split, row.group,
                             f"{row.offset_seconds:.6f}", row.path,
                             "" if row.fold is None else row.fold))


def read_index(cache_dir: Path) -> list[IndexRow]:
    with (cache_dir / INDEX).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return [IndexRow(r["source"], r["label"], r["split"], r["group"],
                         float(r["offset_seconds"]), r["path"],
                         int(r["fold"]) if r["fold"] else None) for r in reader]


def read_skipped(cache_dir: Path) -> list[dict[str, str]]:
    """The rows of ``skipped.csv`` (``path``, ``kind``, ``reason``); empty when it is missing."""
    path = Path(cache_dir) / SKIPPED
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_skipped(cache_dir: Path, skipped: Sequence[Skipped]) -> None:
    with (cache_dir / SKIPPED).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "kind", "reason"))
        for item in skipped:
            writer.writerow((item.path, item.kind.value, item.reason))


class FeatureWriter:
    """Appends ``float16 [n, n_mels, frames]`` blocks to an ``.npy`` file whose number
    of rows is only known at the end: the header space is reserved up front and
    filled in by ``close``, so features stream to disk without being held in memory."""

    def __init__(self, path: Path, n_mels: int, frames: int) -> None:
        self.path, self.shape_tail, self.rows = path, (n_mels, frames), 0
        self._file = AtomicFile(path, "wb")
        self._handle = self._file.handle
        self._handle.write(b"\0" * _HEADER_BYTES)

    def append(self, block: np.ndarray) -> None:
        if block.dtype != np.float16 or block.shape[1:] != self.shape_tail:
            raise ValueError(f"expected float16 [n, {self.shape_tail[0]}, "
                             f"{self.shape_tail[1]}], got {block.dtype} {block.shape}")
        self._handle.write(np.ascontiguousarray(block).astype("<f2", copy=False).tobytes())
        self.rows += block.shape[0]

    def close(self) -> None:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {
            "descr": np.lib.format.dtype_to_descr(np.dtype("<f2")),
            "fortran_order": False,
            "shape": (self.rows, *self.shape_tail),
        })
        if len(header.getvalue()) != _HEADER_BYTES:
            raise RuntimeError(f"unexpected .npy header size {len(header.getvalue())}")
        self._handle.seek(0)
        self._handle.write(header.getvalue())
        self._file.commit()

    def abort(self) -> None:
        self._file.discard()


def band_statistics(features: np.ndarray, rows: np.ndarray, *, chunk: int = 4096,
                    min_std: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per-mel-band mean and std ``float32 [n_mels]`` over ``features[rows]`` (all
    frames), accumulated in float64 chunk by chunk so a memory map is never loaded whole."""
    n_mels = features.shape[1]
    total = np.zeros(n_mels)
    squares = np.zeros(n_mels)
    count = 0
    for start in range(0, rows.size, chunk):
        block = features[np.sort(rows[start : start + chunk])].astype(np.float64)
        total += block.sum(axis=(0, 2))
        squares += np.square(block).sum(axis=(0, 2))
        count += block.shape[0] * block.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, min_std).astype(np.float32)


def features_path(cache_dir: Path, meta: dict[str, Any]) -> Path:
    """The features a cache reads: its own, or a fold view's ``features_file``."""
    return Path(meta.get("features_file") or cache_dir / FEATURES)
