"""The mobilenetv3 space: exact torchvision presets, builds, supernet equivalence, archs."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from child_models.ops import make_divisible
from nas.io.registry import build_space
from search_spaces.base import Arch
from search_spaces.mobilenetv3 import MobileNetV3Space

IMAGENET = dict(num_classes=1000, input_shape=(3, 224, 224))
AUDIO = (1, 64, 63)

# torchvision's expanded widths per block (mobilenetv3.py bneck tables)
TORCHVISION_EXPANDED = {
    "mobilenetv3_large": [16, 64, 72, 72, 120, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960],
    "mobilenetv3_small": [16, 72, 88, 96, 240, 240, 120, 144, 288, 576, 576],
}
SMALL_STRING = (
    "k3e1se-re_k3e4.5-re_k3e3.67-re_k5e4se-hs_k5e6se-hs_k5e6se-hs"
    "_k5e3se-hs_k5e3se-hs_k5e6se-hs_k5e6se-hs_k5e6se-hs"
)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_build(space, arch, *, num_classes, input_shape) -> tuple[nn.Module, int]:
    """The model on the meta device (no memory, no compute) and its MACs
    (FlopCounterMode FLOPs / 2, batch 1)."""
    with torch.device("meta"):
        model = space.build(arch, num_classes=num_classes, input_shape=input_shape).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, *input_shape))
    return model, counter.get_total_flops() // 2


@pytest.fixture(scope="module")
def audio_space() -> MobileNetV3Space:
    return build_space("mobilenetv3")


@pytest.fixture(scope="module")
def tiny_space() -> MobileNetV3Space:
    return MobileNetV3Space(backbone="small", width=0.25, bn_momentum=0.3)


# ---- presets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, params, macs",
    # torchvision: 5,483,032 / 2,542,856 parameters; 0.22 / 0.06 GFLOPS (MACs) in its docs
    [("mobilenetv3_large", 5_483_032, 216_589_760), ("mobilenetv3_small", 2_542_856, 56_510_400)],
)
def test_presets_reproduce_torchvision(name, params, macs):
    space, arch = MobileNetV3Space(backbone="small", width=1.0).preset(name)
    model, model_macs = meta_build(space, arch, **IMAGENET)
    assert n_params(model) == params
    assert [b.depthwise.conv.out_channels for b in model.blocks] == TORCHVISION_EXPANDED[name]
    assert model_macs == macs


def test_preset_switches_backbone_and_keeps_the_rest(audio_space):
    assert list(audio_space.presets) == ["mobilenetv3_small"]
    space, arch = audio_space.preset("mobilenetv3_large")
    assert space.backbone == "large" and arch.space == "mobilenetv3"
    assert {k: v for k, v in space.config.items() if k != "backbone"} == {
        k: v for k, v in audio_space.config.items() if k != "backbone"
    }
    same, small = audio_space.preset("mobilenetv3_small")
    assert same is audio_space and audio_space.arch_string(small) == SMALL_STRING
    with pytest.raises(ValueError, match="no preset"):
        audio_space.preset("mobilenetv2")
    with pytest.raises(ValueError, match="needs kernels"):
        MobileNetV3Space(kernels=[3, 7]).preset("mobilenetv3_small")


def test_width_scales_every_channel_like_torchvision():
    space, arch = MobileNetV3Space(width=0.5).preset("mobilenetv3_small")
    model = space.build(arch, num_classes=10, input_shape=AUDIO)
    expected = [make_divisible(e * 0.5, 8) for e in TORCHVISION_EXPANDED["mobilenetv3_small"]]
    assert [b.depthwise.conv.out_channels for b in model.blocks] == expected
    assert model.stem.conv.out_channels == 8
    assert model.head.conv.conv.out_channels == 6 * make_divisible(96 * 0.5, 8)
    assert model.head.classifier[0].out_features == make_divisible(1024 * 0.5, 8)


# ---- decisions and archs ------------------------------------------------------------


@pytest.mark.parametrize(
    "backbone, skippable",
    [("small", [2, 4, 5, 7, 9, 10]), ("large", [0, 2, 4, 5, 7, 8, 9, 11, 13, 14])],
)
def test_skip_offered_only_where_identity_is_valid(backbone, skippable):
    space = MobileNetV3Space(backbone=backbone)
    names = [d.name for d in space.decisions]
    assert [int(n[1:].split("_")[0]) for n in names if n.endswith("_skip")] == skippable
    assert names[:4] == ["l0_kernel", "l0_expand", "l0_se", "l0_act"]
    expand = {d.name: d.options for d in space.decisions}
    assert 3 in expand["l1_expand"] and 6 in expand["l1_expand"]


def test_decisions_do_not_depend_on_width_stem_or_head():
    """An arch searched on a narrow CPU model loads into a wide one (and vice versa)."""
    names = [d.name for d in MobileNetV3Space(width=1.0).decisions]
    for other in (
        MobileNetV3Space(width=0.25),  # rounding makes layer 6 40 -> 48 into 16 -> 16 here
        MobileNetV3Space(width=0.5, stem_stride=(1, 2), head_channels=256),
    ):
        assert [d.name for d in other.decisions] == names


def test_skip_changes_depth(tiny_space):
    _, ref = tiny_space.preset("mobilenetv3_small")
    skip_all = tiny_space.arch({**ref.as_dict(), **{n: True for n in ref.names if n.endswith("_skip")}})
    full = tiny_space.build(ref, num_classes=4, input_shape=AUDIO)
    short = tiny_space.build(skip_all, num_classes=4, input_shape=AUDIO)
    assert (len(full.blocks), len(short.blocks)) == (11, 5)
    assert len(tiny_space.layers(skip_all, num_classes=4, input_shape=AUDIO)) == 5 + 2
    assert tiny_space.arch_string(skip_all).count("skip") == 6

    supernet = tiny_space.supernet(num_classes=4, input_shape=AUDIO).train()  # batch statistics
    x = torch.randn(8, *AUDIO, generator=torch.Generator().manual_seed(0))
    outputs = []
    for arch in (ref, skip_all):
        torch.manual_seed(0)  # the same dropout mask
        outputs.append(supernet(x, arch))
    assert (outputs[0] - outputs[1]).abs().max() > 1e-3


def test_invalid_archs_and_settings_raise(audio_space, tiny_space):
    _, ref = audio_space.preset("mobilenetv3_small")
    choices = ref.as_dict()
    for bad in ({"l0_kernel": 9}, {"l3_expand": 5}, {"l2_act": "gelu"}, {"l1_skip": True}):
        with pytest.raises(ValueError):
            audio_space.arch({**choices, **bad})
    with pytest.raises(ValueError, match="missing"):
        audio_space.arch({k: v for k, v in choices.items() if k != "l4_se"})
    _, large = audio_space.preset("mobilenetv3_large")
    with pytest.raises(ValueError):  # decisions of another backbone
        audio_space.build(large, num_classes=10, input_shape=AUDIO)
    with pytest.raises(ValueError):
        tiny_space.supernet(num_classes=3, input_shape=AUDIO)(torch.randn(1, *AUDIO), large)
    with pytest.raises(ValueError, match="not 'mobilenetv3'"):
        audio_space.build(Arch("enas_macro", ref.names, ref.values), num_classes=10, input_shape=AUDIO)
    for shape, classes in (((64, 63), 10), ((1, 0, 63), 10), (AUDIO, 0)):
        with pytest.raises(ValueError):
            audio_space.build(ref, num_classes=classes, input_shape=shape)
    for setting in (
        {"backbone": "tiny"},
        {"width": 0},
        {"kernels": [4]},
        {"kernels": []},
        {"expand_ratios": [0]},
        {"stem_stride": [2, 0]},
        {"stem_stride": [2, 2, 2]},
        {"dropout": 1.0},
        {"head_channels": 0},
        {"bn_momentum": 0},
    ):
        with pytest.raises(ValueError):
            MobileNetV3Space(**setting)


def test_json_round_trip_and_stable_hash(audio_space, tmp_path):
    rng = np.random.default_rng(3)
    for _ in range(5):
        arch = audio_space.random_arch(rng)
        path = tmp_path / "arch.json"
        path.write_text(json.dumps(arch.to_json_dict()))
        again = audio_space.load_arch(path)
        assert again == arch and again.hash == arch.hash
        assert audio_space.arch_string(again) == audio_space.arch_string(arch)
    _, ref = audio_space.preset("mobilenetv3_small")
    assert ref.hash == "bd33eef7abd0"  # pinned: must not change across processes or versions
    rebuilt = build_space(audio_space.config)
    assert rebuilt.config == audio_space.config and rebuilt.arch(ref.values) == ref


def test_arch_string_round_trip(audio_space):
    _, ref = audio_space.preset("mobilenetv3_small")
    assert audio_space.arch_from_string(SMALL_STRING) == ref
    rng = np.random.default_rng(4)
    for _ in range(20):
        text = audio_space.arch_string(audio_space.random_arch(rng))
        parsed = audio_space.arch_from_string(text)
        assert audio_space.arch_string(parsed) == text
        assert audio_space.arch_from_string(audio_space.arch_string(parsed)) == parsed
    for bad in ("skip_" + SMALL_STRING[len("k3e1se-re_"):], SMALL_STRING + "_skip", SMALL_STRING.replace("-hs", "-sw", 1)):
        with pytest.raises(ValueError):
            audio_space.arch_from_string(bad)


# ---- builds -------------------------------------------------------------------------


@pytest.mark.parametrize("input_shape", [AUDIO, (1, 40, 101), (2, 96, 17)])
def test_random_archs_build_and_forward(input_shape):
    space = MobileNetV3Space(width=0.5, stem_stride=(2, 1), bn_momentum=0.1)
    rng = np.random.default_rng(0)
    for _ in range(3):
        arch = space.random_arch(rng)
        model = space.build(arch, num_classes=7, input_shape=input_shape).eval()
        out = model(torch.randn(2, *input_shape))
        assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_audio_default_builds_and_handles_longer_clips(audio_space):
    _, ref = audio_space.preset("mobilenetv3_small")
    model = audio_space.build(ref, num_classes=10, input_shape=AUDIO).eval()
    assert model.stem.conv.in_channels == 1
    assert model(torch.randn(1, *AUDIO)).shape == (1, 10)
    assert model(torch.randn(1, 1, 64, 250)).shape == (1, 10)  # global pooling: any length


def test_layer_units_partition_the_network(tiny_space):
    """Chaining the units, each loaded with the model's weights, reproduces the model."""
    rng = np.random.default_rng(1)
    input_shape = (1, 40, 101)
    for _ in range(3):
        arch = tiny_space.random_arch(rng)
        model = tiny_space.build(arch, num_classes=5, input_shape=input_shape).eval()
        units = tiny_space.layers(arch, num_classes=5, input_shape=input_shape)
        parts = [model.stem, *model.blocks, model.head]
        assert len(units) == len(parts)
        assert units[0].key.startswith("mobilenetv3.stem(") and units[-1].key.startswith("mobilenetv3.head(")
        x = torch.randn(2, *input_shape)
        expected = model(x)
        for unit, part in zip(units, parts):
            assert tuple(x.shape[1:]) == unit.input_shape and f"input={'x'.join(map(str, unit.input_shape))}" in unit.key
            module = unit.build().eval()
            module.load_state_dict(part.state_dict())  # strict: same structure
            x = module(x)
        torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-6)


def test_kaiming_init_in_builds_and_supernet(audio_space):
    _, ref = audio_space.preset("mobilenetv3_small")
    for model in (
        audio_space.build(ref, num_classes=10, input_shape=AUDIO),
        audio_space.supernet(num_classes=10, input_shape=AUDIO),
    ):
        linear = model.head.classifier[0]
        # PyTorch's default would give std = 1 / sqrt(3 fan_in), 2.45x smaller
        assert linear.weight.std().item() == pytest.approx(math.sqrt(2 / linear.in_features), rel=0.1)
        conv = model.head.conv.conv
        fan_out = conv.out_channels
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.1)


# ---- supernet -----------------------------------------------------------------------


def test_supernet_matches_standalone_for_50_random_archs(audio_space):
    # momentum 1: a train-mode forward leaves exactly that batch's statistics in the BNs
    # of the path it ran, so eval-mode outputs depend on the input at realistic scale
    # (BNs still at their init would shrink the signal to nothing and prove little).
    space = build_space(audio_space.config, bn_momentum=1.0)
    input_shape = (1, 32, 27)
    supernet = space.supernet(num_classes=6, input_shape=input_shape)
    torch.manual_seed(0)
    with torch.no_grad():
        for m in supernet.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    rng = np.random.default_rng(7)
    x = torch.randn(4, *input_shape)
    for _ in range(50):
        arch = space.random_arch(rng)
        with torch.no_grad():
            supernet.train()(torch.randn(16, *input_shape) * 2 + 1, arch)
            expected = supernet.eval()(x, arch)
        assert expected.std(0).mean() > 0.05  # the comparison below is not of near-zeros
        model = space.build(arch, num_classes=6, input_shape=input_shape)
        model.load_state_dict(supernet.subnet_state_dict(arch))  # strict
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(x), expected, rtol=1e-5, atol=1e-6)


def test_supernet_updates_only_the_chosen_path(tiny_space):
    """Shared weights get gradient only inside the chosen slice; unchosen BNs get none."""
    supernet = tiny_space.supernet(num_classes=3, input_shape=AUDIO).train()
    for seed in range(3):
        supernet.zero_grad(set_to_none=True)
        arch = tiny_space.random_arch(np.random.default_rng(seed))
        supernet(torch.randn(4, *AUDIO), arch).sum().backward()
        for layer, spec in zip(supernet.layers, tiny_space.block_specs(arch)):
            grads = {name: p.grad for name, p in layer.named_parameters()}
            if spec is None:
                assert all(g is None for g in grads.values())
                continue
            e, k = spec.expanded_channels, spec.kernel_size
            chosen_norms = {f"expand_norms.x{e}", f"depthwise_norms.x{e}_k{k}", f"project_norms.x{e}"}
            for name, grad in grads.items():
                if "_norms." in name:
                    assert (grad is not None) == (name.rsplit(".", 1)[0] in chosen_norms), name
            start = (max(layer.kernel_sizes) - k) // 2
            inside = (slice(None, e), slice(None), slice(start, start + k), slice(start, start + k))
            assert_grad_only_inside(layer.depthwise.weight.grad, inside)
            assert_grad_only_inside(layer.project.weight.grad, (slice(None), slice(None, e)))
            if e != spec.in_channels:
                assert_grad_only_inside(layer.expand.weight.grad, (slice(None, e),))
            if spec.use_se:
                squeeze = make_divisible(e // 4, 8)
                assert_grad_only_inside(layer.se.fc1.weight.grad, (slice(None, squeeze), slice(None, e)))
            else:
                assert layer.se.fc1.weight.grad is None


def assert_grad_only_inside(grad: torch.Tensor, inside: tuple) -> None:
    assert torch.count_nonzero(grad[inside]) > 0
    outside = grad.clone()
    outside[inside] = 0
    assert torch.count_nonzero(outside) == 0


def test_zero_init_residual_starts_every_residual_layer_as_the_identity(audio_space):
    """trainer.zero_init_residual: a residual layer's output equals its input at the start,
    whatever its kernel, expansion, SE or activation; the other layers are untouched."""
    from nas.search.few_shot import build_supernet
    from nas.search.few_shot import FewShotSettings

    supernet = build_supernet(audio_space, FewShotSettings(), num_classes=5, input_shape=(1, 64, 63),
                              zero_init_residual=True)
    residual = [layer for layer in supernet.layers if layer.use_residual]
    assert residual and len(residual) < len(supernet.layers)
    arch = audio_space.random_arch(np.random.default_rng(1))  # 4 of its residual layers are kept
    x, checked = supernet.stem(torch.randn(2, 1, 64, 63)), 0
    for layer, spec in zip(supernet.layers, audio_space.block_specs(arch)):
        if spec is None:
            continue
        out = layer(x, spec)
        assert torch.equal(out, x) == layer.use_residual
        checked += layer.use_residual
        x = out
    assert checked >= 2
    enas = build_space("enas_macro")
    with pytest.raises(ValueError, match="trainer.zero_init_residual=true: the enas_macro supernet has no residual"):
        build_supernet(enas, FewShotSettings(), num_classes=5, input_shape=(1, 64, 63), zero_init_residual=True)
