"""Copies of a recording: every copy lands in the split of the first.

A file copied under another name (``take2.wav`` = ``take1.wav``, a class folder holding
a sub-folder of the same files, the same audio saved as WAV and FLAC) would otherwise be
split like any other recording, and a copy in train with its original in test inflates
the test accuracy. Copies are found by a digest of their log-mel features, which prepare
computes anyway (the same samples give the same features; no second read of the files);
those whose splits are chosen by melnas (no fixed split, no fold) join one split group,
and every copy is listed, so that the user can remove them.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nas.data.cache import DUPLICATES
from nas.data.manifest import Recording


@dataclass(frozen=True)
class Copy:
    index: int        # the copy, in the recordings given
    original: int     # the first recording with the same audio

    def same_label(self, recordings: Sequence[Recording]) -> bool:
        return recordings[self.index].label == recordings[self.original].label


def features_digest(features: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(features).tobytes()).hexdigest()


def find_copies(digests: Sequence[str]) -> list[Copy]:
    """Each recording whose digest equals an earlier one's (``digests``: one per recording)."""
    first: dict[str, int] = {}
    copies = []
    for index, digest in enumerate(digests):
        original = first.setdefault(digest, index)
        if original != index:
            copies.append(Copy(index, original))
    return copies


def groups_with_copies_together(recordings: Sequence[Recording], copies: Sequence[Copy]) -> list[str]:
    """The recordings' split groups, with each copy's group merged into its original's
    where melnas chooses the split (neither has a fixed split or a fold: those come from
    the data set and stay as they are)."""
    parent: dict[str, str] = {}

    def root(group: str) -> str:
        while parent.get(group, group) != group:
            group = parent[group]
        return group

    for copy in copies:
        a, b = recordings[copy.original], recordings[copy.index]
        if a.split is None and b.split is None and a.fold is None and b.fold is None:
            ra, rb = root(a.group), root(b.group)
            if ra != rb:
                parent[rb] = ra
    return [root(r.group) for r in recordings]


def write_copies(cache_dir: Path, recordings: Sequence[Recording], copies: Sequence[Copy]) -> None:
    with (Path(cache_dir) / DUPLICATES).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "copy_of", "label", "label_of_original"))
        for copy in copies:
            a, b = recordings[copy.original], recordings[copy.index]
            writer.writerow((str(b.path), str(a.path), b.label, a.label))
