"""Train/val/test assignment by source recording, never by window.

Recordings that share a group (by default each recording is its own group) land in
the same split. Groups are stratified by class (a group's class is its most frequent
label), shuffled with a generator seeded by ``(seed, class name)`` so adding a class
does not reshuffle the others, and cut by the ratios with largest-remainder rounding.
A class with at least three groups gets at least one in each split whose ratio is
positive. A fixed split (a manifest's ``split`` column) wins for its whole group.

Data sets with folds (ESC-50, UrbanSound8K, a manifest's ``fold`` column) are split by
fold instead (``fold_splits``): the test fold is the test split, the validation fold
(when one is chosen) the val split, and otherwise val is drawn from the other folds by
group, with ``data.splits``' train:val ratio.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from nas.data.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitRatios:
    train: float = 0.7
    val: float = 0.15
    test: float = 0.15

    def __post_init__(self) -> None:
        values = self.as_tuple()
        if any(value < 0 for value in values) or self.train <= 0:
            raise DataError(f"data.splits={self.as_dict()} is invalid: ratios must be >= 0 "
                             "and train > 0")
        if abs(sum(values) - 1.0) > 1e-6:
            raise DataError(f"data.splits={self.as_dict()} is invalid: ratios must sum to 1")

    @classmethod
    def from_mapping(cls, values: Mapping[str, float]) -> SplitRatios:
        unknown = set(values) - set(SPLITS)
        if unknown:
            raise DataError(f"data.splits has unknown key(s) {sorted(unknown)}; "
                             f"expected {list(SPLITS)}")
        return cls(**{key: float(value) for key, value in values.items()})

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.train, self.val, self.test)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(SPLITS, self.as_tuple()))


def split_counts(n: int, ratios: SplitRatios) -> tuple[int, int, int]:
    """How many of ``n`` groups go to train, val, test."""
    exact = np.array(ratios.as_tuple()) * n
    counts = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[index] += 1
    if n >= 3:
        for index in (1, 2):
            if ratios.as_tuple()[index] > 0 and counts[index] == 0:
                counts[index] += 1
                counts[int(np.argmax(counts))] -= 1
    if n >= 1 and counts[0] == 0:
        donor = 1 if counts[1] >= counts[2] else 2
        counts[donor] -= 1
        counts[0] += 1
    return int(counts[0]), int(counts[1]), int(counts[2])


def assign_splits(
    labels: Sequence[str],
    groups: Sequence[str],
    fixed: Sequence[str | None],
    ratios: SplitRatios,
    seed: int,
) -> list[str]:
    """One split name per recording (inputs are parallel sequences, one item each)."""
    if not len(labels) == len(groups) == len(fixed):
        raise DataError("labels, groups and fixed must have the same length")
    group_labels: dict[str, Counter] = defaultdict(Counter)
    group_fixed: dict[str, set[str]] = defaultdict(set)
    for label, group, split in zip(labels, groups, fixed):
        group_labels[group][label] += 1
        if split is not None:
            group_fixed[group].add(split)
    split_of_group: dict[str, str] = {}
    for group, splits in group_fixed.items():
        if len(splits) > 1:
            raise DataError(f"group {group!r} is given several splits {sorted(splits)} (by "
                            "the manifest, the data set's lists or folds): one group must "
                            "stay in one split; fix the group or split of its recordings")
        split_of_group[group] = splits.pop()
    free_by_class: dict[str, list[str]] = defaultdict(list)
    for group in sorted(group_labels):
        if group not in split_of_group:
            counts = group_labels[group]
            label = min(counts, key=lambda name: (-counts[name], name))
            free_by_class[label].append(group)
    for label in sorted(free_by_class):
        rng = np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])
        members = free_by_class[label]
        order = [members[i] for i in rng.permutation(len(members))]
        n_train, n_val, _ = split_counts(len(order), ratios)
        for position, group in enumerate(order):
            split = "train" if position < n_train else "val" if position < n_train + n_val \
                else "test"
            split_of_group[group] = split
    return [split_of_group[group] for group in groups]


@dataclass(frozen=True)
class FoldChoice:
    """Which fold is test and which (if any) is val, once resolved against the folds."""

    folds: tuple[int, ...]
    test_fold: int
    val_fold: int | None


def choose_folds(folds: Sequence[int | None], test_fold: int | None,
                 val_fold: int | None) -> FoldChoice | None:
    """Check ``data.test_fold``/``data.val_fold`` against the recordings' folds; None
    when the data set has no folds. The default test fold is the last one."""
    present = sorted({fold for fold in folds if fold is not None})
    if not present:
        if test_fold is not None or val_fold is not None:
            raise DataError(f"data.test_fold={test_fold} / data.val_fold={val_fold} are set, "
                            "but this data set has no folds: unset them (data.splits and "
                            "data.seed decide its split)")
        return None
    if None in folds:
        missing = sum(fold is None for fold in folds)
        raise DataError(f"{missing} of {len(folds)} recordings have no fold: give every "
                        "recording a fold, or none")
    if len(present) < 2:
        raise DataError(f"the data set has a single fold {present}: folds need at least "
                        "two (one to test on, others to train on)")
    test = present[-1] if test_fold is None else int(test_fold)
    for key, value in (("data.test_fold", test), ("data.val_fold", val_fold)):
        if value is not None and value not in present:
            raise DataError(f"{key}={value} is not a fold of this data set; its folds are "
                            f"{present}")
    if val_fold is not None and int(val_fold) == test:
        raise DataError(f"data.val_fold={val_fold} is also the test fold: choose another "
                        "fold, or null to draw val from the training folds")
    return FoldChoice(tuple(present), test, None if val_fold is None else int(val_fold))


def fold_splits(labels: Sequence[str], groups: Sequence[str], folds: Sequence[int],
                choice: FoldChoice, ratios: SplitRatios, seed: int) -> list[str]:
    """One split per recording: the test fold is test, the val fold val; without a val
    fold, val is drawn by group from the other folds with ``ratios``' train:val share."""
    fixed = ["test" if fold == choice.test_fold else "val" if fold == choice.val_fold
             else None for fold in folds]
    if choice.val_fold is not None:
        train_ratios = SplitRatios(1.0, 0.0, 0.0)
    else:
        kept = ratios.train + ratios.val
        train_ratios = SplitRatios(ratios.train / kept, 1.0 - ratios.train / kept, 0.0)
    return assign_splits(labels, groups, fixed, train_ratios, seed)
