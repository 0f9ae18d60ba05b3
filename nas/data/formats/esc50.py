"""ESC-50 (Piczak 2015) and its subset ESC-10, as ``ESC-50-master`` unpacks:
``meta/esc50.csv`` (``filename,fold,target,category,esc10,src_file,take``) and
``audio/{fold}-{src_file}-{take}-{target}.wav`` (2,000 5-s clips, 50 classes, 5 folds).

Label: ``category``. Fold: ``fold`` (the official 5 folds; results are reported as the
mean over the 5 test folds). Group: ``src_file``, the Freesound clip the takes were cut
from, which the folds already keep together.
"""

from __future__ import annotations

from pathlib import Path

from nas.data.errors import SkipKind
from nas.data.formats.common import find_base, read_csv, require_files, unlisted_files
from nas.data.manifest import Listing, Recording, Skipped, parse_fold

COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")


def read_esc50(root: Path, esc10: bool = False) -> Listing:
    """The ESC-50 clips, or with ``esc10`` only the 400 of ESC-10 (``esc10`` column
    ``True``; the others are listed as ``excluded``)."""
    base = find_base(root, "meta/esc50.csv", data_set="ESC-50", unpacked="ESC-50-master")
    meta = base / "meta" / "esc50.csv"
    recordings: list[Recording] = []
    skipped: list[Skipped] = []
    for line, row in enumerate(read_csv(meta, COLUMNS), start=2):
        path = base / "audio" / row["filename"]
        if esc10 and row["esc10"] != "True":
            skipped.append(Skipped(str(path), SkipKind.EXCLUDED,
                                   "not in ESC-10 (data.format.esc10=true)"))
            continue
        recordings.append(Recording(path, f"audio/{row['filename']}", row["category"],
                                    row["src_file"], fold=parse_fold(row["fold"],
                                                                     f"{meta} line {line}")))
    require_files(recordings, meta)
    unlisted_files(base / "audio", [r.path for r in recordings] +
                   [Path(s.path) for s in skipped], skipped, listed_in=meta)
    return Listing(recordings, skipped)
