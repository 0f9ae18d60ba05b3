"""Every registered search space honours the contract of ``search_spaces/base.py``.

Spaces are discovered from ``conf/search_space/*.yaml`` (``nas.io.registry``) and built
with their YAML defaults, so a new space gets all of these checks for free: random
archs build and run, arch JSON round-trips, the supernet reproduces the standalone
network exactly, and the latency units cover the network.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nas.evaluate.cost import count_macs, count_params, model_summary
from nas.io.registry import available_spaces, build_space
from search_spaces.base import Arch, Categorical, InputChoice, SearchSpace

SPACES = available_spaces()
NUM_CLASSES = 5
SMALL_INPUT = (1, 32, 24)  # non-square, like a short log-mel clip; keeps the suite fast
AUDIO_INPUT = (1, 64, 63)  # the default data settings: 64 mels x 63 frames


@pytest.fixture(scope="module", params=SPACES)
def space(request) -> SearchSpace:
    return build_space(request.param)


def random_archs(space: SearchSpace, n: int, seed: int = 0) -> list[Arch]:
    rng = np.random.default_rng(seed)
    return [space.random_arch(rng) for _ in range(n)]


def test_every_yaml_builds_its_space():
    assert SPACES, "no conf/search_space/*.yaml found"
    for name in SPACES:
        space = build_space(name)
        assert space.name == name, f"conf/search_space/{name}.yaml builds a space named {space.name!r}"


# ---- decisions and archs --------------------------------------------------------------


def test_decisions_are_well_formed(space):
    names = [d.name for d in space.decisions]
    assert names and len(set(names)) == len(names), "decision names must be unique"
    assert all(isinstance(d, (Categorical, InputChoice)) for d in space.decisions)


@pytest.mark.parametrize("name", [n for n in SPACES if build_space(n).options_by_size])
def test_options_listed_by_size_run_from_the_smaller_network_to_the_larger(name):
    """``options_by_size`` promises the sandwich rule a largest and a smallest arch: from the
    largest, moving any decision of size to another option must not grow the network, and
    from the smallest not shrink it (options in the wrong order, or a forgotten
    ``shrinking_keys``, fail here). Spaces without that promise (enas_macro) have no order to check."""
    space = build_space(name)

    def size(arch: Arch) -> np.ndarray:
        model = space.build(arch, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
        return np.array([count_params(model), count_macs(model, SMALL_INPUT)])

    largest, smallest = space.extreme_arch(largest=True), space.extreme_arch(largest=False)
    top, bottom = size(largest), size(smallest)
    unsized = set(space.unsized_decisions)
    for d in space.decisions:
        if not isinstance(d, Categorical) or d.name in unsized:
            continue
        for option in d.options:
            assert (size(space.arch({**largest.as_dict(), d.name: option})) <= top).all(), \
                f"{d.name}={option!r} grows the largest arch: list {d.name}'s options smallest first"
            assert (size(space.arch({**smallest.as_dict(), d.name: option})) >= bottom).all(), \
                f"{d.name}={option!r} shrinks the smallest arch: list {d.name}'s options smallest first"
    for arch in random_archs(space, 10):
        assert (bottom <= size(arch)).all() and (size(arch) <= top).all()


def test_arch_json_round_trip_and_stable_hash(space, tmp_path):
    archs = random_archs(space, 20) + [space.preset(name)[1] for name in space.presets]
    for arch in archs:
        data = json.loads(json.dumps(arch.to_json_dict()))
        again = space.arch_from_json_dict(data)
        assert again == arch and again.hash == arch.hash
        assert space.arch(arch.as_dict()) == arch
    # a best_arch.json-like file with extra keys loads too
    path = tmp_path / "best_arch.json"
    path.write_text(json.dumps({**archs[0].to_json_dict(), "accuracy": 0.5, "latency_ms": 1.0}))
    assert space.load_arch(path) == archs[0]
    distinct = {a.to_json() for a in archs}
    assert len({a.hash for a in archs}) == len(distinct), "distinct archs must get distinct hashes"
    assert all(len(a.hash) == 12 for a in archs)


def test_arch_from_another_space_is_refused(space):
    arch = random_archs(space, 1)[0]
    with pytest.raises(ValueError):
        space.arch_from_json_dict({"space": space.name + "_other", "choices": arch.to_json_dict()["choices"]})
    with pytest.raises(ValueError):
        space.arch(list(arch.values)[:-1])


# ---- standalone builds --------------------------------------------------------------


def test_random_archs_build_and_forward(space):
    for arch in random_archs(space, 3, seed=1):
        model = space.build(arch, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT).eval()
        with torch.no_grad():
            out = model(torch.randn(2, *SMALL_INPUT))
            assert out.shape == (2, NUM_CLASSES)
            assert torch.isfinite(out).all()
            # global pooling: a longer clip (more frames) runs through the same network
            longer = model(torch.randn(2, SMALL_INPUT[0], SMALL_INPUT[1], SMALL_INPUT[2] + 16))
            assert longer.shape == (2, NUM_CLASSES)


def test_audio_default_input(space):
    arch = random_archs(space, 1, seed=2)[0]
    model = space.build(arch, num_classes=NUM_CLASSES, input_shape=AUDIO_INPUT).eval()
    with torch.no_grad():
        assert model(torch.randn(1, *AUDIO_INPUT)).shape == (1, NUM_CLASSES)


def test_presets_build(space):
    for name in space.presets:
        preset_space, arch = space.preset(name)
        assert arch.space == preset_space.name
        model = preset_space.build(arch, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT).eval()
        with torch.no_grad():
            assert model(torch.randn(1, *SMALL_INPUT)).shape == (1, NUM_CLASSES)


# ---- supernet == standalone -------------------------------------------------------------


def _randomise_norm_state(module: torch.nn.Module, seed: int) -> None:
    """Give every 1-D parameter and float buffer (BN affine and running statistics,
    biases) distinct random values, so that a weight mapped to the wrong place shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if not tensor.is_floating_point() or tensor.dim() != 1:
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            else:
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=gen) + (1.0 if name.endswith("weight") else 0.0))


def _check_equivalence(space: SearchSpace, archs: list[Arch]) -> None:
    torch.manual_seed(0)
    supernet = space.supernet(num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
    _randomise_norm_state(supernet, seed=0)
    supernet.eval()
    x = torch.randn(3, *SMALL_INPUT)
    first = {}
    with torch.no_grad():
        for arch in archs:
            expected = supernet(x, arch)
            model = space.build(arch, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
            model.load_state_dict(supernet.subnet_state_dict(arch), strict=True)
            model.eval()
            torch.testing.assert_close(
                model(x), expected, rtol=1e-4, atol=1e-5, msg=lambda m: f"{space.arch_string(arch)}: {m}"
            )
            first.setdefault(arch.hash, expected)
        # no hidden state: the first arch gives the same output after all the others ran
        torch.testing.assert_close(supernet(x, archs[0]), first[archs[0].hash])


def test_supernet_matches_standalone_50_archs(space):
    _check_equivalence(space, random_archs(space, 50, seed=4))


def test_supernet_trains_only_the_chosen_path(space):
    """A backward pass through one arch leaves the unchosen candidates without gradients."""
    torch.manual_seed(0)
    supernet = space.supernet(num_classes=NUM_CLASSES, input_shape=SMALL_INPUT).train()
    arch = random_archs(space, 1, seed=5)[0]
    supernet(torch.randn(4, *SMALL_INPUT), arch).sum().backward()
    with_grad = sum(p.numel() for p in supernet.parameters() if p.grad is not None)
    assert 0 < with_grad < count_params(supernet)


# ---- latency units --------------------------------------------------------------------


def test_layer_units_build_run_and_cover_the_network(space):
    seen: dict[str, tuple] = {}
    for arch in random_archs(space, 3, seed=6):
        summary = model_summary(space, arch, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
        for unit in summary.layers:
            signature = (unit.params, unit.macs, unit.input_shape, unit.num_inputs, unit.output_shape)
            assert seen.setdefault(unit.key, signature) == signature, f"key {unit.key} names two different units"
        # the latency table sums units: together they must be the whole network
        assert sum(u.params for u in summary.layers) == summary.params
        assert sum(u.macs for u in summary.layers) == summary.macs
        assert summary.layers[-1].output_shape == (NUM_CLASSES,)
        model = space.build(arch, num_classes=NUM_CLASSES, input_shape=SMALL_INPUT)
        assert summary.macs == count_macs(model, SMALL_INPUT) > 0
