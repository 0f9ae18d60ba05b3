"""Scoring with each arch's output layer refitted (nas/search/refit.py, ArchScorer's refit_batches)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.search.few_shot import FewShotSettings
from nas.search.settings import FinalSettings, TrainerSettings
from nas.search.rank.job import RankSettings
from nas.search.refit import first_examples, fit_output_layer, layer_inputs, output_layer
from nas.search.scoring import ArchScorer
from search_spaces.base import Arch, Supernet


class DepthNet(Supernet):
    """A shared stem, an optional block (``arch["block"]``) and one shared classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.block = nn.Linear(8, 8)
        self.classifier = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:  # type: ignore[override]
        h = torch.relu(self.stem(x))
        if arch["block"]:
            h = torch.relu(self.block(h))
        return self.classifier(h)


def arch(block: int) -> Arch:
    return Arch("toy", ("block",), (block,))


def separable_batches(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Labels that the input's first 3 coordinates tell apart (the largest one wins)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(64, 4, generator=g)
        out.append((x, x[:, :3].argmax(dim=1)))
    return out


def informative_net() -> DepthNet:
    """Stem and block pass the 3 telling coordinates through (in positive and negative
    parts); the classifier is scrambled, so only a refit can read them."""
    torch.manual_seed(0)
    net = DepthNet()
    with torch.no_grad():
        net.stem.weight.zero_()
        net.stem.bias.zero_()
        for i in range(4):
            net.stem.weight[i, i] = 1.0
            net.stem.weight[4 + i, i] = -1.0
        net.block.weight.copy_(torch.eye(8))
        net.block.bias.zero_()
        net.classifier.weight.normal_()
    return net


def test_output_layer_is_the_last_linear_and_a_net_without_one_is_refused() -> None:
    net = DepthNet()
    assert output_layer(net) is net.classifier
    with pytest.raises(ValueError, match="no nn.Linear"):
        output_layer(nn.Sequential(nn.ReLU()))


def test_the_fit_classifies_separable_features_and_l2_shrinks_the_weights() -> None:
    x, y = separable_batches(1, seed=1)[0]
    weight, bias = torch.zeros(3, 4), torch.zeros(3)
    free_w, free_b = fit_output_layer(x, y, weight, bias, l2=0.0)
    assert ((x @ free_w.T + free_b).argmax(dim=1) == y).float().mean() > 0.95
    tight_w, _ = fit_output_layer(x, y, weight, bias, l2=1.0)
    assert tight_w.norm() < 0.5 * free_w.norm()
    assert weight.abs().sum() == 0  # the start is not changed in place


def test_refit_scores_what_the_features_tell_and_leaves_the_supernet_as_it_was() -> None:
    net = informative_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    train, val = separable_batches(8, seed=2), separable_batches(4, seed=3)
    with ArchScorer(net, bn_mode="running") as plain:
        shared = plain.accuracies([arch(0), arch(1)], val)
    with ArchScorer(net, bn_mode="running", refit_batches=train, refit_l2=1e-4) as refit:
        refitted = refit.accuracies([arch(0), arch(1)], val)
    assert max(shared) < 0.8
    assert min(refitted) > 0.9
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not net.classifier._forward_hooks and not net.classifier._forward_pre_hooks
    with ArchScorer(net, bn_mode="running") as again:
        assert again.accuracies([arch(0), arch(1)], val) == shared


def test_an_output_layer_an_arch_does_not_run_is_refused() -> None:
    net = DepthNet()
    with pytest.raises(ValueError, match="ran 0 times"):
        layer_inputs(lambda x: net.stem(x), net.classifier, separable_batches(2, seed=0))


def test_first_examples_cuts_the_last_batch() -> None:
    kept = first_examples(separable_batches(3, seed=0), 100)
    assert [len(y) for _, y in kept] == [64, 36]
    assert first_examples(separable_batches(3, seed=0), 0) == []


def test_bad_refit_settings_are_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match=r"rank.refit_examples=-1"):
        RankSettings(refit_examples=-1)
    with pytest.raises(ValueError, match=r"trainer.final.refit_examples=0 and trainer.final.refit_l2=-0.1"):
        FinalSettings(refit_l2=-0.1)
    with pytest.raises(ValueError, match=r"refit_examples > 0 with trainer.few_shot.split"):
        TrainerSettings(final=FinalSettings(refit_examples=8), few_shot=FewShotSettings(split="auto"))
    TrainerSettings(final=FinalSettings(refit_examples=8))  # one supernet: fine
