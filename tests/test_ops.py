"""Shared ops: channel rounding, conv-BN-act, squeeze-excite, inverted residual, init."""

import math

import pytest
import torch
from torch import nn

from child_models.init import kaiming_init_
from child_models.ops import (
    ConvBNAct,
    InvertedResidual,
    SqueezeExcite,
    make_activation,
    make_divisible,
    pair,
)


@pytest.mark.parametrize(
    "value, divisor, expected",
    [
        (16, 8, 16),
        (12, 8, 16),  # ties round up: int(12 + 4) // 8 * 8
        (35, 8, 32),  # nearest multiple, down when within 10%
        (11.9, 8, 16),  # 8 would be more than 10% below 11.9
        (3, 8, 8),  # never below min_value = divisor
        (20, 16, 32),  # 16 would be more than 10% below 20
        (88 * 0.5, 8, 48),
        (184 * 0.75, 8, 136),
        (1280 * 0.5, 8, 640),
    ],
)
def test_make_divisible_follows_torchvision(value, divisor, expected):
    assert make_divisible(value, divisor) == expected


def test_make_divisible_min_value_and_errors():
    assert make_divisible(3, 8, min_value=4) == 4
    with pytest.raises(ValueError):
        make_divisible(0, 8)
    with pytest.raises(ValueError):
        make_divisible(16, 0)


def test_activations_by_name():
    assert isinstance(make_activation("relu"), nn.ReLU)
    assert isinstance(make_activation("hswish"), nn.Hardswish)
    with pytest.raises(ValueError, match="unknown activation"):
        make_activation("gelu")


def test_pair_rejects_bad_strides():
    assert pair(2) == (2, 2)
    assert pair((2, 1)) == (2, 1)
    for bad in (0, (2,), (2, 0), (1.5, 1), (True, 1)):
        with pytest.raises(ValueError):
            pair(bad)


def test_conv_bn_act_non_square_strides():
    layer = ConvBNAct(1, 8, kernel_size=3, stride=(2, 1), activation="hswish")
    out = layer(torch.randn(2, 1, 64, 63))
    assert out.shape == (2, 8, 32, 63)
    assert layer.conv.bias is None
    with pytest.raises(ValueError):
        ConvBNAct(1, 8, kernel_size=4)


def test_squeeze_excite_matches_torchvision_widths():
    se = SqueezeExcite(72)  # squeeze = make_divisible(72 // 4, 8) = 24
    assert (se.fc1.in_channels, se.fc1.out_channels) == (72, 24)
    assert sum(p.numel() for p in se.parameters()) == 72 * 24 + 24 + 24 * 72 + 72
    x = torch.randn(2, 72, 5, 7)
    scale = se(x) / x
    # one h-sigmoid gate per (sample, channel), in [0, 1]
    assert torch.allclose(scale, scale[..., :1, :1].expand_as(scale), atol=1e-5)
    assert scale.min() >= 0 and scale.max() <= 1


def test_inverted_residual_structure():
    # torchvision Large's 3rd block: 24 -> 72 -> 24, k3, no SE, ReLU
    block = InvertedResidual(
        in_channels=24, expanded_channels=72, out_channels=24, kernel_size=3, activation="relu"
    )
    expected = 24 * 72 + 2 * 72 + 72 * 9 + 2 * 72 + 72 * 24 + 2 * 24
    assert sum(p.numel() for p in block.parameters()) == expected
    assert block.use_residual and block.se is None
    x = torch.randn(2, 24, 9, 13)
    assert block(x).shape == x.shape

    no_expand = InvertedResidual(
        in_channels=16, expanded_channels=16, out_channels=24, kernel_size=5, stride=(2, 1), use_se=True
    )
    assert no_expand.expand is None and not no_expand.use_residual
    assert isinstance(no_expand.se, SqueezeExcite)
    assert no_expand(torch.randn(2, 16, 9, 13)).shape == (2, 24, 5, 13)


def test_inverted_residual_shortcut_is_identity():
    block = InvertedResidual(in_channels=8, expanded_channels=16, out_channels=8, kernel_size=3)
    kaiming_init_(block)
    with torch.no_grad():
        block.project.norm.weight.zero_()  # the branch now outputs its BN bias (zero)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(block.eval()(x), x)


def test_kaiming_init_every_conv_and_linear():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(64, 128, 3),
        nn.BatchNorm2d(128),
        nn.Conv2d(128, 128, 3, groups=128),
        nn.Flatten(),
        nn.Linear(512, 256),
    )
    with torch.no_grad():
        model[1].weight.fill_(3.0)
        model[1].bias.fill_(2.0)
    assert kaiming_init_(model) is model
    conv, bn, depthwise, _, linear = model
    # fan_out = out_channels * k * k (PyTorch counts it without dividing by groups)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.05)
    assert depthwise.weight.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.1)
    assert linear.weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0 and torch.count_nonzero(linear.bias) == 0
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)

    kaiming_init_(conv, conv_mode="fan_in")
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)
    with pytest.raises(ValueError):
        kaiming_init_(conv, conv_mode="fan_avg")
