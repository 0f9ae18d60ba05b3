"""UrbanSound8K (Salamon et al. 2014), as ``UrbanSound8K.tar.gz`` unpacks:
``metadata/UrbanSound8K.csv``
(``slice_file_name,fsID,start,end,salience,fold,classID,class``) and
``audio/fold{1..10}/{slice_file_name}`` (8,732 clips of up to 4 s, 10 classes).

Label: ``class``. Fold: ``fold`` (the official 10 folds; the authors ask for 10-fold
cross-validation on them, never a reshuffle). Group: ``fsID``, the Freesound recording
the slices were cut from.
"""

from __future__ import annotations

from pathlib import Path

from nas.data.formats.common import find_base, read_csv, require_files, unlisted_files
from nas.data.manifest import Listing, Recording, Skipped, parse_fold

COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")


def read_urbansound8k(root: Path) -> Listing:
    base = find_base(root, "metadata/UrbanSound8K.csv", data_set="UrbanSound8K",
                     unpacked="UrbanSound8K")
    meta = base / "metadata" / "UrbanSound8K.csv"
    recordings = []
    for line, row in enumerate(read_csv(meta, COLUMNS), start=2):
        fold = parse_fold(row["fold"], f"{meta} line {line}")
        source = f"audio/fold{fold}/{row['slice_file_name']}"
        recordings.append(Recording(base / source, source, row["class"], row["fsID"],
                                    fold=fold))
    require_files(recordings, meta)
    skipped: list[Skipped] = []
    unlisted_files(base / "audio", [r.path for r in recordings], skipped, listed_in=meta)
    return Listing(recordings, skipped)
