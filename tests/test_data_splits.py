"""Splits by recording group: stratified, deterministic, fixed splits win."""

from __future__ import annotations

from collections import Counter

import pytest

from nas.data.errors import DataError
from nas.data.splits import SplitRatios, assign_splits, split_counts

RATIOS = SplitRatios(0.7, 0.15, 0.15)


@pytest.mark.parametrize("n,expected", [(1, (1, 0, 0)), (2, (2, 0, 0)), (3, (1, 1, 1)),
                                        (10, (7, 2, 1)), (36, (25, 6, 5)), (100, (70, 15, 15))])
def test_split_counts(n, expected):
    assert split_counts(n, RATIOS) == expected


def labelled(per_class: dict[str, int]) -> tuple[list[str], list[str]]:
    labels = [name for name, n in per_class.items() for _ in range(n)]
    groups = [f"{name}/{i}.wav" for name, n in per_class.items() for i in range(n)]
    return labels, groups


def test_stratified_per_class():
    labels, groups = labelled({"bass": 20, "drums": 10, "voice": 7})
    splits = assign_splits(labels, groups, [None] * len(labels), RATIOS, seed=0)
    counts = Counter(zip(labels, splits))
    for name, n in {"bass": 20, "drums": 10, "voice": 7}.items():
        assert (counts[(name, "train")], counts[(name, "val")], counts[(name, "test")]) == \
            split_counts(n, RATIOS)


def test_deterministic_and_seed_dependent():
    labels, groups = labelled({"a": 30, "b": 30})
    fixed = [None] * len(labels)
    first = assign_splits(labels, groups, fixed, RATIOS, seed=3)
    assert first == assign_splits(labels, groups, fixed, RATIOS, seed=3)
    assert first != assign_splits(labels, groups, fixed, RATIOS, seed=4)


def test_adding_a_class_keeps_the_others():
    labels, groups = labelled({"a": 12, "b": 12})
    before = assign_splits(labels, groups, [None] * 24, RATIOS, seed=0)
    more_labels, more_groups = labelled({"a": 12, "b": 12, "c": 5})
    after = assign_splits(more_labels, more_groups, [None] * 29, RATIOS, seed=0)
    assert after[:24] == before


def test_groups_stay_together():
    # Stems of one song (a group) for several instruments must share a split.
    labels = ["bass", "drums", "voice"] * 10
    groups = [f"song{i // 3}" for i in range(30)]
    splits = assign_splits(labels, groups, [None] * 30, RATIOS, seed=1)
    by_group: dict[str, set[str]] = {}
    for group, split in zip(groups, splits):
        by_group.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in by_group.values())
    assert set(splits) == {"train", "val", "test"}


def test_fixed_split_wins_for_its_group():
    labels = ["a"] * 6
    groups = ["g1", "g1", "g2", "g3", "g4", "g5"]
    fixed = [None, "test", None, None, None, None]
    splits = assign_splits(labels, groups, fixed, RATIOS, seed=0)
    assert splits[0] == splits[1] == "test"


def test_conflicting_fixed_splits_in_a_group():
    with pytest.raises(DataError, match="group 'g' is given several splits"):
        assign_splits(["a", "a"], ["g", "g"], ["train", "test"], RATIOS, seed=0)


@pytest.mark.parametrize("ratios", [{"train": 0.5, "val": 0.2, "test": 0.2},
                                    {"train": 0.0, "val": 0.5, "test": 0.5},
                                    {"train": 0.8, "valid": 0.2}])
def test_bad_ratios_are_rejected(ratios):
    with pytest.raises(DataError, match="data.splits"):
        SplitRatios.from_mapping(ratios)
