"""Byte-identical recordings: every copy of a file lands in the split of the first.

A file copied under another name (``take2.wav`` = ``take1.wav``, a class folder holding
a sub-folder of the same files) would otherwise be split like any other recording, and a
copy in train with its original in test inflates the test accuracy. Copies are found by
content digest; those whose splits are chosen by melnas (no fixed split, no fold) join
one split group, and every copy is listed, so that the user can remove them.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from nas.data.cache import DUPLICATES
from nas.data.manifest import Recording


@dataclass(frozen=True)
class Copy:
    index: int        # the copy, in the recordings given
    original: int     # the first recording with the same bytes

    def same_label(self, recordings: Sequence[Recording]) -> bool:
        return recordings[self.index].label == recordings[self.original].label


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_copies(recordings: Sequence[Recording]) -> list[Copy]:
    """Each recording whose file has the same bytes as an earlier one's."""
    first: dict[str, int] = {}
    copies = []
    for index, recording in enumerate(recordings):
        original = first.setdefault(file_digest(recording.path), index)
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
