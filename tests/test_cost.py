"""Parameter and MAC counting (nas.evaluate.cost) against closed forms, and the per-unit summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from nas.evaluate.cost import count_macs, count_params, model_summary
from search_spaces.base import Arch, Categorical, InputChoice, LayerCost, SearchSpace
from tests.test_cli import exit_status


# ---- a toy space: enough of the contract for cost and latency tests ------------------


class SumInputs(nn.Module):
    """``forward(x_1, ..., x_n) -> x_1 + ... + x_n`` (all [B, C, H, W])."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class ToyNet(nn.Module):
    """stem conv -> per layer: kxk conv, then sum with chosen earlier outputs -> pool + linear."""

    def __init__(self, stem: nn.Module, convs: list[nn.Module], skips: list[tuple[int, ...]], head: nn.Module):
        super().__init__()
        self.stem = stem
        self.convs = nn.ModuleList(convs)
        self.skips = skips
        self.sum = SumInputs()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        x = self.stem(x)
        for conv, skip in zip(self.convs, self.skips):
            x = conv(x)
            if skip:
                x = self.sum(x, *(outputs[j] for j in skip))
            outputs.append(x)
        return self.head(x)


class ToySpace(SearchSpace):
    """``num_layers`` convs of ``width`` channels; kernel 1 or 3; ENAS-like skip sums."""

    name = "toy"

    def __init__(self, *, width: int = 4, num_layers: int = 3) -> None:
        self.width = width
        self.num_layers = num_layers

    @property
    def decisions(self):
        out = []
        for i in range(self.num_layers):
            out.append(Categorical(f"l{i}_kernel", (1, 3)))
            out.append(InputChoice(f"l{i}_skip", i))
        return out

    def supernet(self, *, num_classes, input_shape):
        raise NotImplementedError("the toy space only serves cost and latency tests")

    def _stem(self, channels: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(channels, self.width, 3, padding=1, bias=False), nn.ReLU())

    def _conv(self, kernel: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(self.width, self.width, kernel, padding=kernel // 2, bias=False), nn.ReLU())

    def _head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(self.width, num_classes))

    def build(self, arch: Arch, *, num_classes, input_shape):
        kernels = [arch[f"l{i}_kernel"] for i in range(self.num_layers)]
        skips = [arch[f"l{i}_skip"] for i in range(self.num_layers)]
        return ToyNet(self._stem(input_shape[0]), [self._conv(k) for k in kernels], skips, self._head(num_classes))

    def layers(self, arch: Arch, *, num_classes, input_shape):
        c, h, w = input_shape
        inner = (self.width, h, w)
        units = [LayerCost(f"stem_c{c}_w{self.width}_{h}x{w}", tuple(input_shape), lambda: self._stem(c))]
        for i in range(self.num_layers):
            k = arch[f"l{i}_kernel"]
            units.append(LayerCost(f"conv{k}_w{self.width}_{h}x{w}", inner, lambda k=k: self._conv(k)))
            n = 1 + len(arch[f"l{i}_skip"])
            if n > 1:
                units.append(LayerCost(f"sum{n}_w{self.width}_{h}x{w}", inner, SumInputs, num_inputs=n))
        units.append(LayerCost(f"head_w{self.width}_n{num_classes}", inner, lambda: self._head(num_classes)))
        return units


# ---- closed forms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "cin,cout,kernel,stride,padding,groups,hw",
    [
        (3, 8, 3, 1, 1, 1, (10, 10)),
        (4, 6, 5, 2, 2, 2, (17, 9)),  # grouped, strided, non-square
        (8, 8, 3, 1, 1, 8, (7, 12)),  # depthwise
        (1, 16, (3, 5), (1, 2), (1, 2), 1, (64, 63)),  # rectangular kernel and stride on log-mel
    ],
)
def test_conv_macs_and_params_match_closed_form(cin, cout, kernel, stride, padding, groups, hw):
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=True)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    h_out = (hw[0] + 2 * ph - kh) // sh + 1
    w_out = (hw[1] + 2 * pw - kw) // sw + 1
    assert count_macs(conv, (cin, *hw)) == cout * (cin // groups) * kh * kw * h_out * w_out
    assert count_params(conv) == cout * (cin // groups) * kh * kw + cout


def test_linear_and_sequential_macs():
    model = nn.Sequential(nn.Conv2d(2, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 6, 7))
    expected = 2 * 4 * 5 * 6 + 4 * 5 * 6 * 7  # element-wise ops are not counted
    assert count_macs(model, (2, 5, 6)) == expected
    assert count_params(model) == (2 * 4 + 4) + (4 + 4) + (120 * 7 + 7)


def test_count_macs_is_batch_one_eval_and_restores_mode():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5))
    model.train()
    before = model[1].running_mean.clone()
    assert count_macs(model, (1, 8, 8)) == 2 * 9 * 6 * 6
    assert model.training, "the training flag must be restored"
    assert torch.equal(model[1].running_mean, before), "counting must not update BN statistics"


def test_count_macs_multi_input_and_bad_shapes():
    assert count_macs(SumInputs(), (3, 4, 4), num_inputs=3) == 0
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(nn.Conv2d(1, 1, 1), (1, 0, 4))
    with pytest.raises(ValueError, match="num_inputs"):
        count_macs(SumInputs(), (1, 4, 4), num_inputs=0)


def test_model_summary_rows_add_up_to_the_whole_model():
    space = ToySpace(width=4, num_layers=3)
    arch = space.arch([3, (), 1, (0,), 3, (0, 1)])
    summary = model_summary(space, arch, num_classes=5, input_shape=(1, 12, 10))
    units = space.layers(arch, num_classes=5, input_shape=(1, 12, 10))
    assert [u.key for u in summary.layers] == [u.key for u in units]
    assert summary.layers[-1].output_shape == (5,)
    assert summary.layers[0].output_shape == (4, 12, 10)
    assert [u.num_inputs for u in summary.layers if u.key.startswith("sum")] == [2, 3]
    # the toy space has no glue outside its units: per-unit figures add up exactly
    assert summary.params == sum(u.params for u in summary.layers)
    assert summary.macs == sum(u.macs for u in summary.layers)
    assert summary.macs == 4 * 9 * 120 + (9 + 1 + 9) * 16 * 120 + 4 * 5
    data = summary.to_json_dict()
    assert data["arch"] == arch.to_json_dict() and data["input_shape"] == [1, 12, 10]
    assert len(data["layers"]) == len(units)


def test_toy_space_random_archs_are_valid():
    space = ToySpace()
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = space.random_arch(rng)
        out = space.build(arch, num_classes=3, input_shape=(1, 8, 6))(torch.zeros(2, 1, 8, 6))
        assert out.shape == (2, 3)


# ---- melnas-arch ----------------------------------------------------------------------

TORCHVISION_PARAMS = {"mobilenetv3_large": 5_483_032, "mobilenetv3_small": 2_542_856}


@pytest.mark.parametrize("preset", sorted(TORCHVISION_PARAMS))
def test_melnas_arch_presets_match_torchvision(preset, capsys):
    from experiments.arch import main

    main(["--space", "mobilenetv3", "--preset", preset, "--set", "width=1.0",
          "--num-classes", "1000", "--input", "3x224x224", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == TORCHVISION_PARAMS[preset]
    assert data["macs"] == sum(u["macs"] for u in data["layers"]) > 0
    assert data["arch"]["space"] == "mobilenetv3" and data["input_shape"] == [3, 224, 224]


def test_melnas_arch_reads_arch_files_and_samples(tmp_path, capsys):
    from experiments.arch import main
    from nas.io.registry import build_space, space_config

    space = build_space("enas_macro")
    archs = [space.random_arch(np.random.default_rng(s)) for s in range(2)]
    best = tmp_path / "best_arch.json"
    best.write_text(json.dumps({**archs[0].to_json_dict(), "space_config": space_config("enas_macro"), "reward": 0.5}))
    main(["--arch", str(best), "--input", "1x32x24", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["arch"] == archs[0].to_json_dict() and data["num_classes"] == 10

    top = tmp_path / "top_archs.json"
    top.write_text(json.dumps([{**a.to_json_dict(), "reward": 0.1} for a in archs]))
    main(["--arch", str(top), "--input", "1x32x24", "--num-classes", "4"])
    out = capsys.readouterr().out
    assert out.count("total (whole model)") == 2 and "classes 4" in out

    main(["--space", "enas_macro", "--random", "2", "--seed", "3", "--input", "1x32x24", "--json"])
    assert len(json.loads(capsys.readouterr().out)) == 2

    capsys.readouterr()
    assert exit_status(main, ["--arch", str(best), "--space", "mobilenetv3"]) == 2
    assert "not --space" in capsys.readouterr().err
    assert exit_status(main, ["--space", "enas_macro", "--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("melnas-arch: ") and "no preset" in err
