"""The ENAS macro space: decisions, arch round trips, builds, supernet equivalence, costs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from child_models.enas import EnasPlan, pool_layers, reductions_needed
from child_models.enas_ops import BRANCH_OPS, FactorizedReduction
from nas.io.registry import build_space
from search_spaces.base import Categorical, InputChoice
from search_spaces.enas_macro import EnasMacroSpace

NUM_CLASSES = 5
SMALL_INPUT = (1, 20, 17)  # non-square, odd sizes: reductions must round up


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded machine two
    OpenMP threads make each of their many small ops wait for a time slice (~100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def space() -> EnasMacroSpace:
    # 6 layers: pools after layers 1 and 3.
    return EnasMacroSpace(num_layers=6, filters=8)


def _arch(space: EnasMacroSpace, ops: list[str], skips: list[tuple[int, ...]]):
    return space.arch_from_plan(EnasPlan(ops=tuple(ops), skips=tuple(skips)))


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _warm_up(supernet: nn.Module, space: EnasMacroSpace, rng: np.random.Generator, shape, steps: int = 4) -> None:
    """A few SGD steps on random archs so weights and BN statistics leave their init."""
    opt = torch.optim.SGD(supernet.parameters(), lr=0.1, momentum=0.9)
    supernet.train()
    for _ in range(steps):
        x = torch.randn(4, *shape)
        y = torch.randint(0, NUM_CLASSES, (4,))
        opt.zero_grad()
        nn.functional.cross_entropy(supernet(x, space.random_arch(rng)), y).backward()
        opt.step()
    supernet.eval()


# ---- decisions and archs ----------------------------------------------------------------


def test_decisions_follow_the_controller_order(space: EnasMacroSpace) -> None:
    names = [d.name for d in space.decisions]
    assert names == ["l0_op", "l1_op", "l1_skip", "l2_op", "l2_skip", "l3_op", "l3_skip",
                     "l4_op", "l4_skip", "l5_op", "l5_skip"]  # fmt: skip
    ops = [d for d in space.decisions if isinstance(d, Categorical)]
    assert all(d.options == ("conv3x3", "sep3x3", "conv5x5", "sep5x5", "avgpool3x3", "maxpool3x3") for d in ops)
    skips = [d for d in space.decisions if isinstance(d, InputChoice)]
    assert [d.num_inputs for d in skips] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("num_layers", "expected"), [(1, ()), (2, ()), (3, (0, 1)), (6, (1, 3)), (8, (1, 3)), (12, (3, 7)), (24, (7, 15))]
)
def test_pool_layers_match_the_original(num_layers: int, expected: tuple[int, ...]) -> None:
    assert pool_layers(num_layers) == expected


def test_json_and_string_round_trip(space: EnasMacroSpace, tmp_path) -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        arch = space.random_arch(rng)
        text = json.dumps(arch.to_json_dict())
        assert space.arch_from_json_dict(json.loads(text)) == arch
        assert space.parse_arch_string(space.arch_string(arch)) == arch
    path = tmp_path / "best_arch.json"
    path.write_text(json.dumps({**arch.to_json_dict(), "accuracy": 0.5}))
    assert space.load_arch(path) == arch


def test_arch_string_is_compact_and_readable(space: EnasMacroSpace) -> None:
    arch = _arch(
        space,
        ["conv3x3", "sep5x5", "maxpool3x3", "avgpool3x3", "conv5x5", "sep3x3"],
        [(), (0,), (), (0, 2), (), (1, 3, 4)],
    )
    assert space.arch_string(arch) == "c3|s5<0|mp|ap<0,2|c5|s3<1,3,4"


def test_hash_is_stable(space: EnasMacroSpace) -> None:
    arch = _arch(space, ["conv3x3"] * 6, [(), (0,), (), (0, 2), (), (1, 3, 4)])
    # Pinned: the hash must not change between processes or releases (arch files, logs).
    assert arch.hash == "bb3831d03b68"
    assert space.arch(list(arch.values)).hash == arch.hash
    assert _arch(space, ["conv3x3"] * 6, [(), (), (), (0, 2), (), (1, 3, 4)]).hash != arch.hash


@pytest.mark.parametrize(
    "choices",
    [
        {"l0_op": "conv7x7"},  # unknown op
        {"l2_skip": [2]},  # skip index out of range
        {"l1_skip": [0, 0]},  # repeated index
        {"l3_skip": [-1]},
    ],
)
def test_invalid_arch_values_raise(space: EnasMacroSpace, choices: dict) -> None:
    base = space.presets["plain_conv3x3"].to_json_dict()["choices"]
    with pytest.raises(ValueError):
        space.arch({**base, **choices})


def test_arch_of_another_space_size_is_rejected(space: EnasMacroSpace) -> None:
    other = EnasMacroSpace(num_layers=4, filters=8)
    arch = other.random_arch(np.random.default_rng(0))
    supernet = space.supernet(num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
    with pytest.raises(ValueError, match="does not fit"):
        supernet(torch.randn(1, *SMALL_INPUT), arch)
    with pytest.raises(ValueError, match="does not fit"):
        space.build(arch, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)


@pytest.mark.parametrize("text", ["c3|c3", "c3|x9|c3|c3|c3|c3", "c3<0|c3|c3|c3|c3|c3", "c3|c3<a|c3|c3|c3|c3"])
def test_bad_arch_strings_raise(space: EnasMacroSpace, text: str) -> None:
    with pytest.raises(ValueError):
        space.parse_arch_string(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_layers": 0},
        {"filters": 7},  # odd: factorized reduction splits filters in two
        {"keep_prob": 0.0},
        {"stem_stride": [0, 1]},
        {"stem_stride": [2, 2, 2]},
        {"stem_kernel": 4},
    ],
)
def test_invalid_space_settings_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        EnasMacroSpace(**{"num_layers": 6, "filters": 8, **kwargs})


def test_bad_build_arguments_raise(space: EnasMacroSpace) -> None:
    arch = space.presets["plain_conv3x3"]
    with pytest.raises(ValueError, match="input_shape"):
        space.build(arch, num_classes=NUM_CLASSES, input_shape=(64, 63))
    with pytest.raises(ValueError, match="num_classes"):
        space.supernet(num_classes=0, input_shape=SMALL_INPUT)


def test_registry_builds_the_yaml_defaults() -> None:
    space = build_space("enas_macro")
    assert isinstance(space, EnasMacroSpace)
    assert space.config.num_layers == 12 and space.config.stem_stride == (2, 2)
    original = build_space("enas_macro", filters=36, stem_stride=1)
    assert original.config.filters == 36 and original.config.stem_stride == (1, 1)


# ---- models ------------------------------------------------------------------------------


@pytest.mark.parametrize("input_shape", [(1, 64, 63), (3, 40, 101)])
@pytest.mark.parametrize("batch", [1, 3])
def test_random_archs_build_and_run(space: EnasMacroSpace, input_shape, batch: int) -> None:
    rng = np.random.default_rng(batch)
    supernet = space.supernet(num_classes=NUM_CLASSES, input_shape=input_shape)
    for _ in range(3):
        arch = space.random_arch(rng)
        model = space.build(arch, num_classes=NUM_CLASSES, input_shape=input_shape).eval()
        x = torch.randn(batch, *input_shape)
        assert model(x).shape == (batch, NUM_CLASSES)
        assert supernet.eval()(x, arch).shape == (batch, NUM_CLASSES)
    # Global pooling: a clip of another length runs through the same model.
    assert model(torch.randn(batch, input_shape[0], input_shape[1], 30)).shape == (batch, NUM_CLASSES)


def test_supernet_matches_standalone_for_50_random_archs(space: EnasMacroSpace) -> None:
    rng = np.random.default_rng(0)
    supernet = space.supernet(num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
    _warm_up(supernet, space, rng, SMALL_INPUT)
    x = torch.randn(3, *SMALL_INPUT)
    for _ in range(50):
        arch = space.random_arch(rng)
        model = space.build(arch, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
        model.load_state_dict(supernet.subnet_state_dict(arch), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(x), supernet(x, arch), rtol=1e-5, atol=1e-6)


def test_supernet_runs_and_trains_only_the_chosen_path(space: EnasMacroSpace) -> None:
    arch = _arch(space, ["conv3x3", "sep5x5", "maxpool3x3", "conv5x5", "avgpool3x3", "sep3x3"],
                 [(), (0,), (), (), (), (0,)])  # fmt: skip
    supernet = space.supernet(num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
    supernet(torch.randn(2, *SMALL_INPUT), arch).sum().backward()
    with_grad = {name for name, p in supernet.named_parameters() if p.grad is not None}
    model = space.build(arch, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
    assert sum(supernet.get_parameter(n).numel() for n in with_grad) == _params(model)
    assert all(".sep5x5." in n for n in with_grad if n.startswith("branches.1."))
    # Reductions: the path to the head plus the stem, which layer 5 reads.
    assert {n.split(".")[1] for n in with_grad if n.startswith("reductions.")} == {
        "pool1_from0", "pool1_from2", "pool3_from0", "pool3_from4"
    }  # fmt: skip


def test_standalone_holds_only_what_its_arch_needs(space: EnasMacroSpace) -> None:
    plain = space.presets["plain_conv3x3"]
    model = space.build(plain, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
    assert set(model.reductions.keys()) == {"pool1_from2", "pool3_from4"}
    assert len(model.branches) == 6 and all(type(b) is type(model.branches[0]) for b in model.branches)
    assert set(model.skip_sums.keys()) == {"1", "2", "3", "4", "5"}  # search mode: every layer >= 1 has its BN
    supernet = space.supernet(num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
    assert _params(model) < _params(supernet) / 4


def test_reductions_needed_follows_the_readers() -> None:
    pools = pool_layers(6)
    no_skips = EnasPlan(ops=("conv3x3",) * 6, skips=((),) * 6)
    assert reductions_needed(no_skips, pools) == {(1, 2), (3, 4)}
    # Layer 2 reads the stem (reduced once); layer 5 reads layer 0's output (reduced twice).
    skips = EnasPlan(ops=("conv3x3",) * 6, skips=((), (), (0,), (), (), (1,)))
    assert reductions_needed(skips, pools) == {(1, 2), (3, 4), (1, 0), (1, 1), (3, 1)}


def test_skips_change_the_output(space: EnasMacroSpace) -> None:
    ops = ["conv3x3", "sep3x3", "conv5x5", "sep5x5", "avgpool3x3", "maxpool3x3"]
    without = _arch(space, ops, [(), (), (), (), (), ()])
    with_skip = _arch(space, ops, [(), (), (), (), (), (2,)])
    supernet = space.supernet(num_classes=NUM_CLASSES, input_shape=SMALL_INPUT).eval()
    x = torch.randn(2, *SMALL_INPUT)
    with torch.no_grad():
        assert not torch.allclose(supernet(x, without), supernet(x, with_skip), atol=1e-4)


def test_pooling_layers_halve_height_and_width(space: EnasMacroSpace) -> None:
    arch = space.random_arch(np.random.default_rng(3))
    model = space.build(arch, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT).eval()
    seen: dict[int, tuple[int, int]] = {}
    for i, branch in enumerate(model.branches):
        branch.register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(i, tuple(inp[0].shape[2:])))
    model(torch.randn(1, *SMALL_INPUT))
    # 20 x 17 -> (after layer 1) 10 x 9 -> (after layer 3) 5 x 5
    assert seen == {0: (20, 17), 1: (20, 17), 2: (10, 9), 3: (10, 9), 4: (5, 5), 5: (5, 5)}
    branch_units = [u for u in space.layers(arch, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
                    if u.key.startswith("enas.branch")]  # fmt: skip
    assert [u.input_shape[1:] for u in branch_units] == [seen[i] for i in range(6)]


def test_stem_stride_downsamples_frequency_and_time_separately() -> None:
    space = EnasMacroSpace(num_layers=2, filters=8, stem_stride=[2, 1])
    model = space.build(space.presets["plain_sep3x3"], num_classes=NUM_CLASSES, input_shape=(1, 64, 63))
    assert model.stem(torch.randn(1, 1, 64, 63)).shape == (1, 8, 32, 63)


def test_factorized_reduction_uses_every_pixel() -> None:
    reduce = FactorizedReduction(in_channels=1, out_channels=2).eval()
    x = torch.zeros(1, 1, 5, 4)
    x[0, 0, 1, 1] = 1.0  # an odd pixel: a plain stride-2 1x1 conv would never see it
    out = reduce(x)
    assert out.shape == (1, 2, 3, 2)
    assert out[0, 1].abs().sum() > 0 and torch.equal(out[0, 0], out[0, 0, 0, 0].expand(3, 2))


def test_kaiming_init_on_every_conv_and_linear() -> None:
    space = EnasMacroSpace(num_layers=3, filters=64)
    supernet = space.supernet(num_classes=10, input_shape=(1, 16, 16))
    for name, module in supernet.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.weight[0].numel() >= 64:
            fan_in = module.weight[0].numel()
            # He normal: std sqrt(2 / fan_in); PyTorch's default would give sqrt(1 / (3 fan_in)).
            assert module.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.15), name
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))


# ---- latency units -------------------------------------------------------------------------


def test_layer_units_partition_the_model_and_run(space: EnasMacroSpace) -> None:
    rng = np.random.default_rng(5)
    for _ in range(5):
        arch = space.random_arch(rng)
        units = space.layers(arch, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
        model = space.build(arch, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
        modules = [u.build().eval() for u in units]
        assert sum(_params(m) for m in modules) == _params(model)
        for unit, module in zip(units, modules):
            inputs = [torch.randn(1, *unit.input_shape) for _ in range(unit.num_inputs)]
            module(*inputs)
        plan = space.plan(arch)
        expected = 1 + 6 + 5 + len(reductions_needed(plan, pool_layers(6))) + 1
        assert len(units) == expected
        skip_units = [u for u in units if u.key.startswith("enas.skip_sum_bn")]
        assert [u.num_inputs for u in skip_units] == [len(s) + 1 for s in plan.skips[1:]]


def test_layer_keys_describe_the_unit_completely(space: EnasMacroSpace) -> None:
    rng = np.random.default_rng(6)
    params_by_key: dict[str, int] = {}
    for _ in range(10):
        for unit in space.layers(space.random_arch(rng), num_classes=NUM_CLASSES, input_shape=SMALL_INPUT):
            n = _params(unit.build())
            assert params_by_key.setdefault(unit.key, n) == n
    assert any("op=sep5x5" in k and "hw=10x9" in k for k in params_by_key)
    assert set(BRANCH_OPS) == {k.split("op=")[1].split(",")[0] for k in params_by_key if "op=" in k}
