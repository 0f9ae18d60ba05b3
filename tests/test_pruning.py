"""Channel pruning (nas.compress.pruning) on tiny models of both spaces: the pruned build runs,
keeps its output shape, keeps the largest-norm filters, and survives model.pt."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from nas.io.model_file import load_model, save_model
from nas.compress.pruning import (
    candidate_widths,
    channel_groups,
    keyed_groups,
    kept_filters,
    prunable_widths,
    prune_model,
    prune_state_dict,
)
from nas.io.registry import build_space

NUM_CLASSES = 4


MOBILENET = {"_target_": "search_spaces.mobilenetv3.MobileNetV3Space", "backbone": "small", "width": 0.5}
ENAS = {"_target_": "search_spaces.enas_macro.EnasMacroSpace", "num_layers": 6, "filters": 16}


def _mobilenet():
    space = build_space(MOBILENET)
    _, arch = space.preset("mobilenetv3_small")  # SE and non-SE blocks, ReLU and h-swish
    return space, arch, (1, 32, 32)


def _enas():
    space = build_space(ENAS)
    arch = space.parse_arch_string("c3|s5<0|mp|c5<0,2|s3|ap<1")  # every op kind, skips
    return space, arch, (1, 16, 16)


CASES = {"mobilenetv3": _mobilenet, "enas_macro": _enas}


@pytest.fixture(params=sorted(CASES))
def case(request):
    space, arch, shape = CASES[request.param]()
    torch.manual_seed(0)
    model = space.build(arch, num_classes=NUM_CLASSES, input_shape=shape)
    _randomise_bn(model)
    return space, arch, shape, model.eval()


def _randomise_bn(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so that slicing errors show."""
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            module.weight.data.copy_(0.5 + torch.rand(n, generator=gen))
            module.bias.data.copy_(0.1 * torch.randn(n, generator=gen))


def _narrower(space, arch) -> dict[str, int]:
    """Every prunable group one 8-channel step narrower where it can be."""
    widths = {}
    for group in channel_groups(space, arch):
        if group.prunable:
            options = candidate_widths(group.channels, divisor=8, min_channels=8, forbidden=group.forbidden)
            widths[group.name] = options[0] if options else group.channels
    return widths


def test_both_spaces_offer_prunable_groups(case):
    space, arch, _, _ = case
    widths = prunable_widths(space, arch)
    assert len(widths) >= 4
    assert any(c > w for c, w in zip(widths.values(), _narrower(space, arch).values()))


def test_pruned_model_runs_keeps_output_shape_and_shrinks(case):
    space, arch, shape, model = case
    widths = prunable_widths(space, arch)
    narrow = _narrower(space, arch)
    pruned = prune_model(space, arch, model, widths=widths, new_widths=narrow, num_classes=NUM_CLASSES, input_shape=shape)
    x = torch.randn(3, *shape)
    assert pruned(x).shape == model(x).shape == (3, NUM_CLASSES)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    assert prunable_widths(space, arch, narrow) == narrow
    # The latency units carry the widths: narrowing any one group changes some unit keys.
    before = space.layers(arch, num_classes=NUM_CLASSES, input_shape=shape)
    for name in (k for k in widths if narrow[k] != widths[k]):
        after = space.layers(arch, num_classes=NUM_CLASSES, input_shape=shape, widths={**widths, name: narrow[name]})
        assert len(before) == len(after)
        assert any(a.key != b.key for a, b in zip(after, before)), name
    assert [u.key for u in space.layers(arch, num_classes=NUM_CLASSES, input_shape=shape, widths=widths)] == [
        u.key for u in before
    ]


def _make_inert(model: torch.nn.Module, groups, new_sizes: dict[str, int]) -> None:
    """Make the last channels of every shrinking group contribute nothing: zero filters
    (so they rank last by L2 norm) and a zero BN output (SE squeeze: a negative bias before its ReLU)."""
    state = model.state_dict()
    with torch.no_grad():
        for group in keyed_groups(model, groups):
            drop = slice(new_sizes[group.name], group.channels)
            for key in group.score:
                state[key][drop] = 0.0
            for key, dim in group.tensors:
                tensor = state[key]
                if tensor.ndim != 1 or dim != 0 or key.endswith(("running_mean", "running_var")):
                    continue
                tensor[drop] = -1.0 if "se.fc1.bias" in key else 0.0


def test_pruning_keeps_the_largest_norm_filters(case):
    """A model whose pruned-away filters were inert computes the same after pruning."""
    space, arch, shape, model = case
    widths = prunable_widths(space, arch)
    narrow = _narrower(space, arch)
    new_sizes = {g.name: g.channels for g in channel_groups(space, arch, narrow)}
    _make_inert(model, channel_groups(space, arch, widths), new_sizes)
    pruned = prune_model(space, arch, model, widths=widths, new_widths=narrow, num_classes=NUM_CLASSES, input_shape=shape)
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(pruned.eval()(x), model(x), rtol=1e-4, atol=1e-5)


def test_pruned_model_round_trips_through_model_pt(case, tmp_path):
    space, arch, shape, model = case
    widths = prunable_widths(space, arch)
    narrow = _narrower(space, arch)
    pruned = prune_model(space, arch, model, widths=widths, new_widths=narrow, num_classes=NUM_CLASSES, input_shape=shape)
    path = save_model(
        tmp_path / "model.pt", model=pruned, arch=arch, space_config=MOBILENET if space.name == "mobilenetv3" else ENAS,
        class_names=[f"c{i}" for i in range(NUM_CLASSES)], input_shape=shape, data_meta={}, widths=narrow,
    )
    loaded = load_model(path)
    assert loaded.widths == narrow
    assert loaded.network_hash != arch.hash  # another network than the arch's own build
    only_narrowed = {k: v for k, v in narrow.items() if widths[k] != v}
    assert dataclasses.replace(loaded, widths=only_narrowed).network_hash == loaded.network_hash
    assert dataclasses.replace(loaded, widths=widths).network_hash == arch.hash  # its own build, written out
    x = torch.randn(4, *shape)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), pruned.eval()(x))


def test_kept_filters_are_the_top_norms_in_order():
    weight = torch.tensor([[1.0], [5.0], [0.5], [3.0], [3.0]])
    assert kept_filters(3, weight).tolist() == [1, 3, 4]
    assert kept_filters(2, weight).tolist() == [1, 3]  # tie broken by the lower index
    with pytest.raises(ValueError):
        kept_filters(6, weight)


def test_tied_filters_are_ranked_by_their_joint_norm():
    first = torch.tensor([[3.0, 0.0], [0.0, 0.0], [1.0, 1.0]])  # norms^2: 9, 0, 2
    second = torch.tensor([[0.0], [4.0], [2.0]])  # norms^2: 0, 16, 4 -> joint 9, 16, 6
    assert kept_filters(2, first, second).tolist() == [0, 1]
    assert kept_filters(1, first).tolist() == [0]
    with pytest.raises(ValueError, match="one filter count"):
        kept_filters(1, first, torch.ones(2, 1))


def test_candidate_widths_are_multiples_below_and_skip_forbidden():
    assert candidate_widths(40, divisor=8, min_channels=8) == [32, 24, 16, 8]
    assert candidate_widths(36, divisor=8, min_channels=16, forbidden=(24,)) == [32, 16]
    assert candidate_widths(8, divisor=8, min_channels=8) == []


def test_pruning_rejects_widening_and_bad_widths():
    space, arch, shape = _enas()
    groups = channel_groups(space, arch)
    wider = channel_groups(space, arch, {"l0_inner": 24})
    model = space.build(arch, num_classes=NUM_CLASSES, input_shape=shape)
    with pytest.raises(ValueError, match="widen"):
        prune_state_dict(model.state_dict(), keyed_groups(model, groups), wider)
    with pytest.raises(ValueError, match="l2_inner"):  # layer 2 is a max pool: no inner width
        space.build(arch, num_classes=NUM_CLASSES, input_shape=shape, widths={"l2_inner": 8})
    mspace, march, mshape = _mobilenet()
    with pytest.raises(ValueError, match="l99_expanded"):
        mspace.layers(march, num_classes=NUM_CLASSES, input_shape=mshape, widths={"l99_expanded": 8})


def test_a_space_without_channel_groups_is_a_clear_error():
    class Plain:
        name = "plain"

    with pytest.raises(ValueError, match="cannot be pruned"):
        channel_groups(Plain(), None)  # type: ignore[arg-type]


def test_removing_a_residual_block_keeps_every_other_weight():
    """Pruning a residual block to nothing = the arch skipping it; with another group cut
    inertly in the same step, the network computes what the original does without that block."""
    space, arch, shape = _mobilenet()
    torch.manual_seed(0)
    model = space.build(arch, num_classes=NUM_CLASSES, input_shape=shape)
    _randomise_bn(model)
    model.eval()
    widths = prunable_widths(space, arch)
    groups = [g for g in channel_groups(space, arch) if g.prunable]
    removed = [g for g in groups if g.removal][1]  # not the first: later blocks must move up a place
    cut = next(g for g in groups if not g.removal and candidate_widths(g.channels, divisor=8, min_channels=8))
    narrow = {k: v for k, v in widths.items() if k != removed.name}
    narrow[cut.name] = candidate_widths(cut.channels, divisor=8, min_channels=8, forbidden=cut.forbidden)[0]
    _make_inert(model, [cut], {cut.name: narrow[cut.name]})
    new_arch = space.arch({**arch.as_dict(), **dict(removed.removal)})
    pruned = prune_model(
        space, arch, model, widths=widths, new_widths=narrow, new_arch=new_arch,
        num_classes=NUM_CLASSES, input_shape=shape,
    )
    assert len(pruned.blocks) == len(model.blocks) - 1
    index = int(keyed_groups(model, [removed])[0].module.split(".")[1])
    model.blocks[index] = torch.nn.Identity()  # the residual branch dropped: x + nothing
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(pruned.eval()(x), model(x), rtol=1e-4, atol=1e-5)


def test_only_residual_blocks_are_removable():
    space, arch, _ = _mobilenet()
    skippable = {d.name for d in space.decisions if d.name.endswith("_skip")}
    for group in channel_groups(space, arch):
        if group.removal:
            assert dict(group.removal).keys() <= skippable and keyed_groups(space.build(arch, num_classes=NUM_CLASSES, input_shape=(1, 32, 32)), [group])[0].module.startswith("blocks.")
    space, arch, _ = _enas()
    assert not any(g.removal for g in channel_groups(space, arch))


def _residual_blocks(model) -> list[bool]:
    return [block.use_residual for block in model.blocks]


def test_stage_channels_are_cut_together_and_residuals_stay():
    """A stage's channels are one group: stem/projection filters, their BN and every
    reader's inputs shrink together, every residual sum survives, and a model whose cut
    channels were inert computes the same."""
    space, arch, shape = _mobilenet()
    torch.manual_seed(0)
    model = space.build(arch, num_classes=NUM_CLASSES, input_shape=shape)
    _randomise_bn(model)
    model.eval()
    groups = {g.name: g for g in channel_groups(space, arch)}
    widths = prunable_widths(space, arch)
    residual_stages = [g for g in groups.values() if g.name.endswith("_out") and len(g.score) > 1]
    assert residual_stages  # MobileNetV3-Small has stages of several residual blocks
    for stage in [groups["stem_out"], *residual_stages]:
        options = candidate_widths(stage.channels, divisor=4, min_channels=4, forbidden=stage.forbidden)
        narrow = {**widths, stage.name: options[-1]}
        inert = copy.deepcopy(model)
        _make_inert(inert, [stage], narrow)
        pruned = prune_model(space, arch, inert, widths=widths, new_widths=narrow, num_classes=NUM_CLASSES, input_shape=shape)
        assert _residual_blocks(pruned) == _residual_blocks(model)
        x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            torch.testing.assert_close(pruned.eval()(x), inert(x), rtol=1e-4, atol=1e-5)
        assert all(pruned.state_dict()[key].shape[0] == narrow[stage.name] for key in keyed_groups(inert, [stage])[0].score)


BACKBONES = [("small", 0.5), ("small", 1.0), ("large", 1.0)]


def _structure(space, arch, widths) -> list[tuple[bool, bool]]:
    """Per block: (residual sum?, expand conv dropped?)."""
    specs = [s for s in space.block_specs(arch, widths) if s is not None]
    return [(s.has_residual, s.expanded_channels == s.in_channels) for s in specs]


@pytest.mark.parametrize("backbone,width", BACKBONES)
def test_forbidden_widths_are_exactly_those_that_change_the_structure(backbone, width):
    """Every forbidden width changes a residual or an expand conv; every other candidate
    width keeps them. Small w1.0 and Large have stride-1 stage boundaries (40->48,
    80->112), where a residual sum would appear if the two stages became equal."""
    space = build_space({**MOBILENET, "backbone": backbone, "width": width})
    arch = space.preset(f"mobilenetv3_{backbone}")[1]
    full = prunable_widths(space, arch)
    reference = _structure(space, arch, full)
    residual_appears = False
    for group in channel_groups(space, arch):
        if not group.prunable:
            continue
        for candidate in group.forbidden:
            changed = _structure(space, arch, {**full, group.name: candidate})
            assert changed != reference, (group.name, candidate)
            residual_appears |= sum(r for r, _ in changed) > sum(r for r, _ in reference)
        for candidate in candidate_widths(group.channels, divisor=8, min_channels=8, forbidden=group.forbidden):
            assert _structure(space, arch, {**full, group.name: candidate}) == reference, (group.name, candidate)
    assert residual_appears == ((backbone, width) != ("small", 0.5))


def test_a_block_no_group_offers_to_remove_is_refused_by_name():
    space = build_space({**MOBILENET, "backbone": "large", "width": 1.0})
    _, arch = space.preset("mobilenetv3_large")
    shape = (1, 32, 32)
    model = space.build(arch, num_classes=NUM_CLASSES, input_shape=shape)
    widths = prunable_widths(space, arch)
    assert not any(dict(g.removal).get("l0_skip") for g in channel_groups(space, arch))  # no expand conv, no SE
    skipped = space.arch({**arch.as_dict(), "l0_skip": True})
    with pytest.raises(ValueError, match=r"changes \['l0_skip'\].*offers \['l"):
        prune_model(space, arch, model, widths=widths, new_widths=widths, new_arch=skipped,
                    num_classes=NUM_CLASSES, input_shape=shape)
