"""Few-shot NAS (trainer.few_shot): the split decision, routing, per-sub sandwich groups,
and a real search that splits, trains each sub-supernet, resumes and reloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas.evaluate.cost import count_macs
from nas.io.checkpoint import load_checkpoint
from nas.search.few_shot import FewShotSettings, FewShotSupernet, build_supernet, per_option, split_decision
from nas.search.loop import CHECKPOINT
from nas.search.sampling import group_loss, sandwich_group
from search_spaces.base import Categorical
from search_spaces.enas_macro import EnasMacroSpace
from search_spaces.mobilenetv3 import MobileNetV3Space
from tests.test_search import assert_same_run, search, workdir  # noqa: F401 (fixture)

SHAPE = (1, 16, 16)


def tiny_space() -> MobileNetV3Space:
    return MobileNetV3Space(width=0.25, kernels=[3, 5], expand_ratios=[3])


def test_auto_splits_on_the_decision_that_takes_most_macs_off_the_largest_arch():
    space = tiny_space()
    largest = space.extreme_arch(largest=True)

    def macs_saved(name: str, first_option) -> int:
        def macs(arch):
            return count_macs(space.build(arch, num_classes=3, input_shape=SHAPE), SHAPE)
        return macs(largest) - macs(space.arch({**largest.as_dict(), name: first_option}))

    saved = {d.name: macs_saved(d.name, d.options[0]) for d in space.decisions if isinstance(d, Categorical)}
    decision = split_decision(space, "auto", num_classes=3, input_shape=SHAPE)
    assert decision.name == next(name for name, value in saved.items() if value == max(saved.values()))
    assert split_decision(space, "l3_kernel", num_classes=3, input_shape=SHAPE).name == "l3_kernel"
    with pytest.raises(ValueError, match="trainer.few_shot.split='l99_kernel'"):
        split_decision(space, "l99_kernel", num_classes=3, input_shape=SHAPE)
    with pytest.raises(ValueError, match="trainer.few_shot.split=auto needs the largest arch"):
        split_decision(EnasMacroSpace(num_layers=2, filters=8), "auto", num_classes=3, input_shape=SHAPE)
    with pytest.raises(ValueError, match="trainer.few_shot.at=1.0"):
        FewShotSettings(split="auto", at=1.0)


def test_sub_supernets_start_from_the_one_shot_weights_and_each_serves_its_option():
    torch.manual_seed(0)
    space = tiny_space()
    net = build_supernet(space, FewShotSettings(split="l3_kernel"), num_classes=3, input_shape=SHAPE).eval()
    assert isinstance(net, FewShotSupernet) and len(net.subs) == 2
    x = torch.randn(2, *SHAPE)
    small = space.extreme_arch(largest=False)  # l3_kernel = 3
    large = space.extreme_arch(largest=True)  # l3_kernel = 5
    assert net.sub_for(small) is net.sub_for(large) is net.subs[0]
    before = net(x, large)
    with torch.no_grad():
        next(net.subs[1].parameters()).add_(1.0)  # stale weights the split must overwrite
    net.split()
    assert net.sub_for(small) is net.subs[0] and net.sub_for(large) is net.subs[1]
    assert torch.allclose(net(x, large), before)
    assert bool(net.state_dict()["is_split"])


def test_each_sub_supernet_gets_its_own_sandwich_group_distilled_from_its_own_teacher():
    space = tiny_space()
    decision = split_decision(space, "l3_kernel", num_classes=3, input_shape=SHAPE)
    group = sandwich_group(space, np.random.default_rng(0), 2)
    archs = per_option(space, decision, group)
    assert len(archs) == 8
    assert [a["l3_kernel"] for a in archs] == [3] * 4 + [5] * 4
    assert archs[4] == space.extreme_arch(largest=True)  # the second sub's teacher is the largest arch
    torch.manual_seed(0)
    logits, y = torch.randn(8, 5, 4), torch.randint(0, 4, (5,))
    per_group = [group_loss("sandwich")(half, y) for half in logits.split(4)]
    assert torch.allclose(group_loss("sandwich", group_size=4)(logits, y), sum(per_group) / 2)
    assert not torch.allclose(group_loss("sandwich")(logits, y), sum(per_group) / 2)


@pytest.mark.slow
def test_a_few_shot_search_splits_trains_every_sub_resumes_and_reloads(workdir: Path, tmp_path: Path) -> None:
    """Split before the second of 2 epochs: afterwards every sub-supernet trains on its own
    archs, so each ends away from the one-shot weights it started from; a run stopped
    before the split and resumed ends like the uninterrupted one; the checkpoint loads
    into the supernet ``melnas-rank`` builds."""
    options = ("trainer.sampling=sandwich", "trainer.few_shot.split=l3_kernel")
    stopped = tmp_path / "stopped"
    assert not search(workdir, stopped, *options, "trainer.stop_after_epochs=1").finished
    one_shot = load_checkpoint(stopped / CHECKPOINT)["supernet"]
    assert not bool(one_shot["is_split"])

    whole = tmp_path / "whole"
    assert search(workdir, whole, *options).finished
    state = load_checkpoint(whole / CHECKPOINT)["supernet"]
    assert bool(state["is_split"])
    weights = [k for k in one_shot if k.startswith("subs.0.") and k.endswith("weight")]
    for sub in ("subs.0.", "subs.1."):
        moved = max(float((state[sub + k[7:]] - one_shot[k]).abs().max()) for k in weights)
        assert moved > 1e-4, f"{sub[:-1]} did not train after the split"

    assert search(workdir, stopped, *options, "resume=true").finished
    assert_same_run(whole, stopped)

    space = MobileNetV3Space(width=0.25, kernels=[3, 5], expand_ratios=[3])
    cache = load_checkpoint(whole / CHECKPOINT)
    reloaded = build_supernet(space, FewShotSettings(split="l3_kernel"), num_classes=3, input_shape=(1, 16, 16))
    reloaded.load_state_dict(cache["supernet"])  # strict: the same sub-supernets, split
    assert bool(reloaded.is_split)
    x = torch.randn(2, 1, 16, 16)
    assert F.softmax(reloaded.eval()(x, space.extreme_arch(largest=True)), dim=1).shape == (2, 3)
