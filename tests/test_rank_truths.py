"""``standalone.json`` and ``rank.truths`` (nas/search/rank/truths.py): an earlier rank
check's standalone results, read back only where they hold for the search being ranked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nas.errors import MelnasError
from nas.io.registry import build_space
from nas.search.rank.standalone import network_digest
from nas.search.rank.truths import Standalone, Truth, read_truths, write_truths
from search_spaces.mobilenetv3 import MobileNetV3Space

SPACE = MobileNetV3Space(width=0.5, kernels=[3, 5], expand_ratios=[3, 6])
CONFIG = {"name": "mobilenetv3", "width": 0.5, "kernels": [3, 5], "expand_ratios": [3, 6]}


def some_truths(count: int = 3) -> list[Truth]:
    rng = np.random.default_rng(0)
    archs = []
    while len(archs) < count:  # distinct archs
        arch = SPACE.random_arch(rng)
        if all(arch.hash != a.hash for a in archs):
            archs.append(arch)
    return [Truth(arch, "top" if i == 0 else "stratified", f"net{i}",
                  Standalone({0: 0.5 + i / 10, 1: 0.52 + i / 10}, {0: 0.4 + i / 10, 1: 0.44 + i / 10}))
            for i, arch in enumerate(archs)]


def written(tmp_path, truths=None, **changes):
    path = write_truths(tmp_path / "standalone.json", truths or some_truths(), space=SPACE, split_identity="splits-a",
                        space_config=CONFIG, recipe={"epochs": 24}, num_classes=11, input_shape=(1, 64, 63))
    if changes:
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return path


def read(path, *, split_identity="splits-a", space_config=CONFIG, networks=("net0", "net1", "net2")):
    digests = {t.arch.hash: n for t, n in zip(some_truths(), networks)}
    return read_truths(path, SPACE, split_identity=split_identity, space_config=space_config,
                       network_of=lambda arch: digests[arch.hash])


def test_truths_read_back_as_written(tmp_path):
    truths = some_truths()
    path = written(tmp_path, truths)
    back, recipe = read(tmp_path)  # the folder holding standalone.json will do
    assert recipe == {"epochs": 24}
    assert [t.arch.hash for t in back] == [t.arch.hash for t in truths]
    assert [t.origin for t in back] == ["top", "stratified", "stratified"]
    assert back[2].standalone.val_by_seed == {0: pytest.approx(0.7), 1: pytest.approx(0.72)}
    assert back[2].standalone.val == pytest.approx(0.71) and back[2].standalone.test == pytest.approx(0.62)
    assert read(path)[0] == back


def test_truths_of_other_splits_space_or_networks_are_refused(tmp_path):
    path = written(tmp_path)
    with pytest.raises(MelnasError, match=r"rank.truths=.*trained on other splits than this search's data holds"):
        read(path, split_identity="splits-b")
    with pytest.raises(MelnasError, match=r"rank.truths=.*another search space config"):
        read(path, space_config={**CONFIG, "width": 1.0})
    with pytest.raises(MelnasError, match=r"rank.truths=.*builds 1 of its archs into other networks"):
        read(path, networks=("net0", "edited", "net2"))


def test_a_file_that_is_not_truths_is_refused_with_its_name(tmp_path):
    with pytest.raises(MelnasError, match=r"rank.truths=.*cannot read .*missing.json"):
        read(tmp_path / "missing.json")
    not_ours = tmp_path / "rank.json"
    not_ours.write_text(json.dumps({"kendall_tau": 0.4}))
    with pytest.raises(MelnasError, match=r"rank.json is not a melnas-rank standalone.json"):
        read(not_ours)
    path = written(tmp_path, some_truths()[:1])
    with pytest.raises(MelnasError, match=r"needs 2 or more archs"):
        read(path)


def test_the_bundled_sets_reference_holds_for_todays_space_code():
    """benchmarks/reference/ keeps standalone truths of the bundled set; they stay usable
    only while the space's code builds each arch into the network that was trained. An
    edit that changes those networks fails here: make the reference again (its README)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "reference" / "mix_quick_standalone.json"
    document = json.loads(path.read_text())
    space = build_space(document["space"])

    def network_of(arch):
        return network_digest(space.build(arch, num_classes=document["num_classes"],
                                          input_shape=tuple(document["input_shape"])))

    truths, recipe = read_truths(path, space, split_identity=document["split_identity"],
                                 space_config=document["space"], network_of=network_of)
    assert len(truths) == 24 and sorted(truths[0].standalone.val_by_seed) == [0, 1] and recipe["epochs"] == 24
