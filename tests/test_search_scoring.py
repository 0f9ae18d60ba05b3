"""Units of the search loop: shared-weight scoring, latency lookups, settings, seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from nas.io.checkpoint import CheckpointError
from nas.search.scoring import ArchScorer, LatencyLookup
from experiments.settings import settings_from
from nas.search.loop import SearchSettings
from nas.search.resume import check_resumable, identity_of
from nas.search.settings import TrainerSettings
from nas.search.phases import derive_seed, rank_key
from search_spaces.base import Arch, Supernet

CHECKPOINT = Path("run/checkpoints/last.pt")


class TwoPathNet(Supernet):
    """Conv -> BN -> one of two heads (``arch["head"]``), with dropout: enough to test scoring."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.heads = nn.ModuleList([nn.Linear(4, 3), nn.Linear(4, 3)])

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:  # type: ignore[override]
        h = self.drop(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))
        return self.heads[arch["head"]](h)


def arch(head: int) -> Arch:
    return Arch("toy", ("head",), (head,))


def batches(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 1, 6, 6, generator=g) * 3 + 1, torch.randint(0, 3, (16,), generator=g)) for _ in range(n)]


def trained_net() -> TwoPathNet:
    torch.manual_seed(0)
    net = TwoPathNet()
    net.train()
    with torch.no_grad():
        for x, _ in batches(3, seed=1):
            net(x, arch(0))  # give the running statistics something other than their init
    return net


@pytest.mark.parametrize("mode", ["batch", "recalibrate", "running"])
def test_scoring_leaves_the_supernet_as_it_was(mode: str) -> None:
    net = trained_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with ArchScorer(net, bn_mode=mode, recalibration_batches=batches(2, seed=2)) as scorer:
        for head in (0, 1):
            accuracy = scorer.accuracy(arch(head), batches(2, seed=3))
            assert 0.0 <= accuracy <= 1.0
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net.bn.momentum == 0.1


def test_scoring_is_deterministic_with_dropout_off() -> None:
    net = trained_net()
    with ArchScorer(net, bn_mode="batch") as scorer:
        first = scorer.accuracy(arch(1), batches(3, seed=4))
        assert scorer.accuracy(arch(1), batches(3, seed=4)) == first


@pytest.mark.parametrize("mode", ["batch", "recalibrate", "running"])
def test_scoring_many_archs_at_once_gives_each_its_own_accuracy(mode: str) -> None:
    """accuracies() reads every arch's hit count once at the end; each equals the hits
    counted directly with that arch's own batch-norm preparation."""
    net = trained_net()
    val, recal = batches(3, seed=6), batches(2, seed=2)
    with ArchScorer(net, bn_mode=mode, recalibration_batches=recal) as scorer:
        together = scorer.accuracies([arch(0), arch(1), arch(0)], val)
        one_by_one = [scorer.accuracy(arch(head), val) for head in (0, 1, 0)]
        direct = []
        for head in (0, 1, 0):
            scorer._prepare(arch(head))
            direct.append(sum(int((net(x, arch(head)).argmax(1) == y).sum()) for x, y in val) / 48)
    assert together == one_by_one == direct  # the same integer counts over the same 48 examples
    assert scorer.accuracies([], val) == []


def test_bn_modes_use_the_statistics_they_promise() -> None:
    net = trained_net()
    val = batches(1, seed=5)
    x, _ = val[0]

    def predictions(mode: str, recal: list) -> torch.Tensor:
        with ArchScorer(net, bn_mode=mode, recalibration_batches=recal) as scorer:
            scorer._prepare(arch(0))
            with torch.no_grad():
                return net(x, arch(0))

    net.eval()
    with torch.no_grad():
        running = net(x, arch(0))
    net.train()
    assert torch.allclose(predictions("running", []), running)
    # Recalibrating on the evaluated batch itself: running mean = batch mean, running var =
    # the unbiased batch variance, so the result is close to (not equal to) batch statistics.
    assert torch.allclose(predictions("recalibrate", val), predictions("batch", []), atol=1e-2)
    assert not torch.allclose(predictions("batch", []), running, atol=1e-2)


def test_mean_scorer_averages_supernets_and_leaves_each_as_it_was() -> None:
    """The referees' score: the mean of each supernet's own accuracy, each recalibrated on
    the same batches and each put back as it was (running statistics, train mode)."""
    from nas.search.referees import MeanScorer

    own, referee = trained_net(), trained_net()
    torch.manual_seed(7)
    for layer in (referee.conv, *referee.heads):  # another supernet: other weights
        layer.reset_parameters()
    recal, val, archs = batches(2, seed=2), batches(8, seed=3), [arch(0), arch(1)]
    before = [{k: v.clone() for k, v in net.state_dict().items()} for net in (own, referee)]
    alone = []
    for net in (own, referee):
        with ArchScorer(net, bn_mode="recalibrate", recalibration_batches=recal) as scorer:
            alone.append(scorer.accuracies(archs, val))
    with MeanScorer([ArchScorer(net, bn_mode="recalibrate", recalibration_batches=recal)
                     for net in (own, referee)]) as scorer:
        mean = scorer.accuracies(archs, val)
    assert alone[0] != alone[1]
    assert mean == pytest.approx([(a + b) / 2 for a, b in zip(*alone)], abs=1e-12)
    for net, state in zip((own, referee), before):
        assert net.training and all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_unknown_bn_mode_and_missing_recalibration_batches_are_errors() -> None:
    with pytest.raises(ValueError, match="bn_mode"):
        ArchScorer(TwoPathNet(), bn_mode="frozen")
    with pytest.raises(ValueError, match="recalibration batch"):
        ArchScorer(TwoPathNet(), bn_mode="recalibrate")


def test_latency_lookup_caches_and_keeps_the_random_stream() -> None:
    calls = []

    def predict(space: object, a: Arch) -> float:
        calls.append(a.hash)
        torch.randn(100)  # a table timing a new unit builds and runs modules
        return 1.5 + a["head"]

    lookup = LatencyLookup(predict, space=None)  # type: ignore[arg-type]
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert lookup(arch(1)) == 2.5 and lookup(arch(1)) == 2.5 and lookup(arch(0)) == 1.5
    assert torch.equal(torch.rand(3), expected)
    assert len(calls) == 2


def test_trainer_settings_reject_unknown_keys_and_bad_values() -> None:
    def trainer_settings(values: dict) -> TrainerSettings:
        return settings_from({"trainer": values}, SearchSettings).trainer

    assert trainer_settings({"epochs": 2, "final": {"top_k": 3}}).final.top_k == 3
    assert settings_from({"epochs": 2}, TrainerSettings, prefix="trainer").epochs == 2
    with pytest.raises(ValueError, match=r"unknown setting\(s\) trainer.epoch \(did you mean trainer.epochs\?\);"):
        trainer_settings({"epoch": 2})
    with pytest.raises(ValueError, match=r"trainer.final.topk"):
        trainer_settings({"final": {"topk": 2}})
    with pytest.raises(ValueError, match="trainer.controller_warmup"):
        trainer_settings({"controller_warmup": 1.0})
    with pytest.raises(ValueError, match="trainer.archs_per_step=0"):
        trainer_settings({"archs_per_step": 0})
    with pytest.raises(ValueError, match=r"trainer.epochs='two': expected int"):
        trainer_settings({"epochs": "two"})
    with pytest.raises(ValueError, match="bn_mode"):
        trainer_settings({"final": {"bn_mode": "nope"}})


def test_resume_identity_ignores_only_what_a_resume_may_change() -> None:
    cfg = OmegaConf.create({"seed": 0, "resume": False, "trainer": {"epochs": 4, "progress": True}})
    identity = identity_of(cfg)
    assert identity == {"seed": 0, "trainer.epochs": 4}
    resumed = identity_of(OmegaConf.merge(cfg, {"resume": True, "trainer": {"progress": False}}))
    check_resumable({"format": 1, "identity": identity}, resumed, CHECKPOINT)
    changed = identity_of(OmegaConf.merge(cfg, {"trainer": {"epochs": 5}}))
    with pytest.raises(CheckpointError, match=r"trainer.epochs: 4 -> 5"):
        check_resumable({"format": 1, "identity": identity}, changed, CHECKPOINT)


def test_derived_seeds_are_stable_and_distinct() -> None:
    seeds = {derive_seed(0, "train", e) for e in range(50)} | {derive_seed(1, "train", 0), derive_seed(0, "val", 0)}
    assert len(seeds) == 52
    assert derive_seed(0, "train", 3) == derive_seed(0, "train", 3)
    assert all(0 <= s < 2**31 for s in seeds)


def test_ranking_prefers_reward_then_accuracy_then_latency() -> None:
    records = [
        {"reward": 0.5, "accuracy": 0.5, "latency_ms": 1.0, "hash": "a"},
        {"reward": 0.6, "accuracy": 0.4, "latency_ms": 9.0, "hash": "b"},
        {"reward": 0.5, "accuracy": 0.6, "latency_ms": 2.0, "hash": "c"},
        {"reward": 0.5, "accuracy": 0.6, "latency_ms": 1.0, "hash": "d"},
    ]
    assert [r["hash"] for r in sorted(records, key=rank_key)] == ["b", "d", "c", "a"]


def test_the_best_archs_hold_each_network_once() -> None:
    """Two archs differing only in a skipped layer's choices are one network: kept once."""
    from types import SimpleNamespace

    from nas.search.phases import remember_best
    from search_spaces.mobilenetv3 import MobileNetV3Space

    space = MobileNetV3Space(width=0.5, kernels=[3, 5], expand_ratios=[3, 6])
    base = space.extreme_arch(largest=False).as_dict()  # layer 2 is skipped in the smallest arch
    twin = space.arch({**base, "l2_kernel": 5})
    other = space.extreme_arch(largest=True)
    assert twin.hash != space.arch(base).hash and space.arch_string(twin) == space.arch_string(space.arch(base))

    def record(arch, reward: float) -> dict:
        return {"arch": arch.to_json_dict(), "arch_str": space.arch_string(arch), "hash": arch.hash,
                "accuracy": reward, "latency_ms": 1.0, "reward": reward}

    ctx = SimpleNamespace(state=SimpleNamespace(best=[]), settings=SimpleNamespace(final=SimpleNamespace(top_k=3)))
    remember_best(ctx, [record(space.arch(base), 0.8), record(other, 0.7)])
    remember_best(ctx, [record(twin, 0.9)])
    assert [r["hash"] for r in ctx.state.best] == [twin.hash, other.hash]
