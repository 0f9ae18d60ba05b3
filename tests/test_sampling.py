"""Shared-weight sampling options of the search (nas/search/sampling.py): strict-fair
groups, the sandwich rule with in-place distillation, uniform warm-up; the space's
largest and smallest archs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas.search.sampling import (
    LatencyBand, check_space_sampling, controller_untrained, fair_group, fair_group_size, group_forward, group_loss,
    sandwich_group, step_archs,
)
from nas.search.settings import TrainerSettings
from nas.train.loop import train_step
from search_spaces.base import Categorical
from search_spaces.enas_macro import EnasMacroSpace
from search_spaces.mobilenetv3 import MobileNetV3Space

QUICK = dict(width=0.5, kernels=[3, 5], expand_ratios=[3, 6])  # conf/experiment/quick.yaml's space
TINY = dict(width=0.25, kernels=[3, 5], expand_ratios=[3])
SHAPE = (1, 16, 16)


def test_fair_group_holds_every_option_equally_often():
    space = MobileNetV3Space(**QUICK)
    k = fair_group_size(space)
    assert k == 6  # options per decision: 2 or 3
    for seed in range(3):
        group = fair_group(space, np.random.default_rng(seed))
        assert len(group) == k
        for d in space.decisions:
            counts = Counter(arch[d.name] for arch in group)
            assert set(counts) == set(d.options)
            assert set(counts.values()) == {k // d.size}


def test_fair_group_covers_each_option_exactly_once_when_sizes_are_equal():
    space = MobileNetV3Space(width=0.25, kernels=[3, 5], expand_ratios=[3], backbone="small")
    sizes = {d.size for d in space.decisions if isinstance(d, Categorical)}
    k = fair_group_size(space)
    group = fair_group(space, np.random.default_rng(0))
    for d in space.decisions:
        if d.size == k:
            assert sorted(map(str, (a[d.name] for a in group))) == sorted(map(str, d.options))
    assert k == np.lcm.reduce(sorted(sizes))


def test_fair_groups_differ_between_steps_and_repeat_with_the_seed():
    space = MobileNetV3Space(**QUICK)
    a = step_archs(space, None, "fair", steps=3, rng=np.random.default_rng(1), uniform=False)
    b = step_archs(space, None, "fair", steps=3, rng=np.random.default_rng(1), uniform=False)
    assert [[x.hash for x in g] for g in a] == [[x.hash for x in g] for g in b]
    assert {x.hash for x in a[0]} != {x.hash for x in a[1]}


def test_uniform_sampling_trains_one_arch_per_step_drawn_without_the_controller():
    """``sampling=uniform`` never asks the controller (None here) and spreads each
    decision's options evenly over the steps: 600 draws of a 2- or 3-option decision
    put each option within 4 standard deviations of its expected count."""
    space = MobileNetV3Space(**QUICK)
    groups = step_archs(space, None, "uniform", steps=600, rng=np.random.default_rng(0), uniform=False)
    assert all(len(group) == 1 for group in groups)
    for d in space.decisions:
        if isinstance(d, Categorical):
            counts = Counter(str(group[0][d.name]) for group in groups)
            expected = 600 / d.size
            assert set(counts) == {str(o) for o in d.options}
            assert all(abs(n - expected) < 4 * np.sqrt(expected) for n in counts.values())
    TrainerSettings(sampling="uniform")  # a valid setting


def params(space, arch) -> int:
    return sum(p.numel() for p in space.build(arch, num_classes=3, input_shape=SHAPE).parameters())


def test_largest_and_smallest_archs_are_the_space_extremes():
    space = MobileNetV3Space(**QUICK)
    largest, smallest = space.extreme_arch(largest=True), space.extreme_arch(largest=False)
    for name, value in largest.as_dict().items():
        d = next(d for d in space.decisions if d.name == name)
        key = name.split("_", 1)[1]
        assert value == (False if key == "skip" else d.options[-1])
        assert smallest[name] == (True if key == "skip" else d.options[0])
    rng = np.random.default_rng(0)
    sizes = [params(space, space.random_arch(rng)) for _ in range(6)]
    assert params(space, smallest) <= min(sizes) and max(sizes) <= params(space, largest)


def test_a_space_without_size_ordered_options_has_no_extremes():
    space = EnasMacroSpace(num_layers=3, filters=8)  # conv3x3, sep3x3, ..., maxpool: no size order
    with pytest.raises(ValueError, match="trainer.sampling=sandwich"):
        space.extreme_arch(largest=True)
    with pytest.raises(ValueError, match="trainer.sampling=sandwich"):
        check_space_sampling(space, "sandwich")  # what the search calls before it measures or trains
    check_space_sampling(space, "fair")


def test_sandwich_group_is_largest_smallest_then_random():
    space = MobileNetV3Space(**QUICK)
    group = sandwich_group(space, np.random.default_rng(0), 2)
    assert len(group) == 4
    assert group[0] == space.extreme_arch(largest=True) and group[1] == space.extreme_arch(largest=False)


def test_tilted_sandwich_trains_every_size_between_the_extremes():
    """Uniform draws crowd the middle of the size range; the tilted draw reaches the
    archs next to either extreme (measured as the share of decisions that take the
    largest arch's value)."""
    space = MobileNetV3Space(**QUICK)
    largest = space.extreme_arch(largest=True)

    def share_of_largest(arch):
        return np.mean([str(arch[d.name]) == str(largest[d.name]) for d in space.decisions])

    def random_archs(draw):
        groups = step_archs(space, None, "sandwich", steps=100, rng=np.random.default_rng(0), uniform=False,
                            sandwich_random=2, sandwich_draw=draw)
        assert all(group[:2] == [largest, space.extreme_arch(largest=False)] for group in groups)
        return [share_of_largest(arch) for group in groups for arch in group[2:]]

    uniform, tilted = random_archs("uniform"), random_archs("tilted")
    assert 0.15 < min(uniform) and max(uniform) < 0.85
    assert min(tilted) < 0.1 and max(tilted) > 0.9
    with pytest.raises(ValueError, match="trainer.sandwich_draw='spread'"):
        TrainerSettings(sampling="sandwich", sandwich_draw="spread")


def test_budget_sandwich_trains_the_archs_of_its_latency_band():
    """sandwich_draw=budget: every random arch of a group predicts within the band (here a
    stand-in predictor, the share of the largest arch's values), the extremes stay; a band
    no draw reaches gives the nearest draws; a band that is no band is refused."""
    space = MobileNetV3Space(**QUICK)
    largest = space.extreme_arch(largest=True)

    def share_of_largest(arch):
        return float(np.mean([str(arch[d.name]) == str(largest[d.name]) for d in space.decisions]))

    def random_archs(band):
        groups = step_archs(space, None, "sandwich", steps=50, rng=np.random.default_rng(0), uniform=False,
                            sandwich_random=2, sandwich_draw="budget", band=band)
        assert all(group[:2] == [largest, space.extreme_arch(largest=False)] for group in groups)
        return [share_of_largest(arch) for group in groups for arch in group[2:]]

    uniform = [share_of_largest(arch) for group in step_archs(
        space, None, "sandwich", steps=50, rng=np.random.default_rng(0), uniform=False) for arch in group[2:]]
    assert np.mean([0.55 <= v <= 0.65 for v in uniform]) < 0.6  # most uniform draws lie outside the band
    in_band = random_archs(LatencyBand(share_of_largest, 0.55, 0.65))
    assert len(in_band) == 100 and all(0.55 <= v <= 0.65 for v in in_band)
    assert len(set(in_band)) > 3  # uniform within the band, not one arch
    out_of_reach = random_archs(LatencyBand(share_of_largest, 1.5, 2.0))
    assert min(out_of_reach) > max(uniform) - 0.1  # the nearest of many draws: the largest-like archs
    with pytest.raises(ValueError, match=r"trainer.sandwich_draw=budget needs"):
        sandwich_group(space, np.random.default_rng(0), 2, draw="budget")
    for band in ([1.0, 0.8], [0.8], [-0.1, 1.0], ["0.8", "1.0"]):
        with pytest.raises(ValueError, match=r"trainer.sandwich_band=\["):
            TrainerSettings(sampling="sandwich", sandwich_draw="budget", sandwich_band=band)


def test_distillation_loss_is_cross_entropy_of_the_teacher_plus_kl_of_the_students():
    torch.manual_seed(0)
    logits, y = torch.randn(3, 5, 4, requires_grad=True), torch.randint(0, 4, (5,))
    loss = group_loss("sandwich")(logits, y)
    teacher = F.softmax(logits[0].detach(), dim=1)
    kl = [F.kl_div(F.log_softmax(s, dim=1), teacher, reduction="batchmean") for s in logits[1:]]
    expected = (F.cross_entropy(logits[0], y) + sum(kl)) / 3
    assert torch.allclose(loss, expected)
    loss.backward()
    # the teacher learns from the labels only: its gradient is that of its cross-entropy / 3
    ce_grad = torch.autograd.grad(F.cross_entropy(logits[0], y) / 3, logits)[0][0]
    assert torch.allclose(logits.grad[0], ce_grad, atol=1e-6)
    # students identical to the teacher have nothing to learn
    same = logits.detach()[:1].repeat(3, 1, 1)
    assert torch.allclose(group_loss("sandwich")(same, y), F.cross_entropy(same[0], y) / 3)


def test_sandwich_without_distillation_trains_every_arch_on_the_labels():
    torch.manual_seed(0)
    logits, y = torch.randn(3, 5, 4), torch.randint(0, 4, (5,))
    expected = sum(F.cross_entropy(s, y) for s in logits) / 3
    assert torch.allclose(group_loss("sandwich", distill=False)(logits, y), expected)
    assert not torch.allclose(group_loss("sandwich", distill=True)(logits, y), expected)


@pytest.mark.parametrize("mode", ["sandwich", "fair"])
def test_a_group_step_trains_the_supernet(mode):
    torch.manual_seed(0)
    space = MobileNetV3Space(**TINY)
    supernet = space.supernet(num_classes=3, input_shape=SHAPE)
    rng = np.random.default_rng(0)
    group = sandwich_group(space, rng, 1) if mode == "sandwich" else fair_group(space, rng)
    x, y = torch.randn(8, *SHAPE), torch.randint(0, 3, (8,))
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.05, momentum=0.9)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    losses = []
    supernet.train()
    for _ in range(6):
        loss, logits = train_step(supernet, x, y, loss_fn=group_loss(mode), optimizer=optimizer,
                                  forward=group_forward(supernet, group), grad_clip_norm=5.0)
        losses.append(float(loss))
    assert logits.shape == (len(group), 8, 3)
    assert losses[-1] < losses[0]
    assert any(not torch.equal(before[k], v) for k, v in supernet.state_dict().items() if v.is_floating_point())


def test_warmup_draws_uniform_archs_without_touching_the_controller():
    space = MobileNetV3Space(**QUICK)

    class NoController:
        def sample(self, n):
            raise AssertionError("the controller must not be asked during the warm-up")

    groups = step_archs(space, NoController(), "controller", steps=4, rng=np.random.default_rng(0), uniform=True)
    assert [len(g) for g in groups] == [1, 1, 1, 1]
    assert len({g[0].hash for g in groups}) == 4


def test_unknown_sampling_mode_is_rejected():
    from nas.search.settings import TrainerSettings

    with pytest.raises(ValueError, match="trainer.sampling='fiar'"):
        TrainerSettings(sampling="fiar")


@pytest.mark.slow
@pytest.mark.parametrize("option", ["trainer.sampling=fair", "trainer.sampling=sandwich",
                                    "trainer.controller_warmup=0.5"])
def test_a_search_with_the_option_resumes_like_an_uninterrupted_run(tmp_path, option):
    """The options draw from per-epoch generators: a stopped and resumed run ends identical."""
    from tests.test_search import assert_same_run, search, write_tiny_audio

    write_tiny_audio(tmp_path / "audio")
    reference = search(tmp_path, tmp_path / "reference", option)
    assert reference.finished
    assert search(tmp_path, tmp_path / "stopped", option, "trainer.stop_after_epochs=1").epochs_done == 1
    assert search(tmp_path, tmp_path / "stopped", option, "resume=true").finished
    assert_same_run(tmp_path / "reference", tmp_path / "stopped")


def test_the_search_runs_a_controller_with_the_threads_it_asks_for():
    """Controller.threads is applied around sample() by the engine; the caller's count is restored."""
    from controllers.enas_lstm import EnasLstmController
    from nas.runtime import torch_threads

    seen: list[int] = []

    class Recording(EnasLstmController):
        def sample(self, n):
            seen.append(torch.get_num_threads())
            return super().sample(n)

    space = MobileNetV3Space(**TINY)
    controller = Recording(space.decisions)
    assert controller.threads == 1
    with torch_threads(2):
        step_archs(space, controller, "controller", steps=3, rng=np.random.default_rng(0), uniform=False)
        assert torch.get_num_threads() == 2
    assert seen == [1]


def test_shared_steps_draw_uniformly_until_the_controllers_first_update():
    """Warm-up W controller steps: updates start at step W + 1, so a shared epoch that starts
    after exactly W steps still has an untrained controller."""
    assert controller_untrained(0, 100) and controller_untrained(100, 100)
    assert not controller_untrained(101, 100)
    assert not controller_untrained(0, 0), "no warm-up: the controller samples from the start"


def test_sandwich_extremes_can_draw_their_activations_afresh_each_step():
    """``unsized="uniform"``: the teacher and the smallest arch keep every sized decision
    at its extreme and draw the activation (no weights, no size) per step, so the shared
    weights are not tuned to the teacher's activations alone."""
    space = MobileNetV3Space(**QUICK)
    assert set(space.unsized_decisions) == {f"l{i}_act" for i in range(space.num_layers)}
    groups = step_archs(space, None, "sandwich", steps=20, rng=np.random.default_rng(0), uniform=False,
                        sandwich_random=2, sandwich_unsized="uniform")
    for extreme, largest in ((0, True), (1, False)):
        fixed = space.extreme_arch(largest=largest).as_dict()
        for group in groups:
            drawn = group[extreme].as_dict()
            assert {n: v for n, v in drawn.items() if n not in space.unsized_decisions} == \
                   {n: v for n, v in fixed.items() if n not in space.unsized_decisions}
        activations = Counter(group[extreme][name] for group in groups for name in space.unsized_decisions)
        assert set(activations) == {"relu", "hswish"} and min(activations.values()) > 50  # of 220
    fixed_groups = step_archs(space, None, "sandwich", steps=3, rng=np.random.default_rng(0), uniform=False)
    assert all(group[0] == space.extreme_arch(largest=True) for group in fixed_groups)
    with pytest.raises(ValueError, match="trainer.sandwich_unsized='random'"):
        TrainerSettings(sampling="sandwich", sandwich_unsized="random")
