"""The pieces of the training recipe: SpecAugment, the LR schedule, weight-decay groups,
early stopping with best-epoch weights, and every option of the ``train`` config group."""

from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nas.train.augment import AugmentSettings, SpecAugment
from nas.io.config_dirs import BUILTIN_CONF_DIR
from nas.train.loop import MIN_STEPS_PER_EPOCH, Recipe, _run_epoch, few_steps_warning, fit, parameter_groups, warmup_cosine
from experiments.settings import build, settings_from
from nas.train.job import TrainSettings


def test_spec_augment_masks_whole_bands_and_spans():
    torch.manual_seed(0)
    augment = SpecAugment(freq_masks=1, freq_width=5, time_masks=1, time_width=7).train()
    x = torch.randn(64, 1, 32, 40) + 10.0  # no zeros before masking
    masked = augment(x)
    assert masked.shape == x.shape
    zero = masked == 0
    kept = ~zero
    assert torch.equal(masked[kept], x[kept])  # untouched values are unchanged
    for example in zero[:, 0]:
        bands = example.all(dim=1)  # mel rows fully masked
        frames = example.all(dim=0)  # frame columns fully masked
        # every zero lies in a fully masked band or frame span, each span contiguous and narrow
        assert torch.equal(example, bands[:, None] | frames[None, :])
        for span, width in ((bands, 5), (frames, 7)):
            idx = torch.nonzero(span).flatten()
            assert idx.numel() <= width
            if idx.numel():
                assert idx[-1] - idx[0] + 1 == idx.numel()
    # masks differ between examples
    assert len({tuple(z.all(dim=1).tolist()) for z in zero[:, 0]}) > 1


def test_spec_augment_is_identity_in_eval_mode_and_with_zero_width():
    x = torch.randn(4, 1, 16, 20)
    assert torch.equal(SpecAugment().eval()(x), x)
    assert torch.equal(SpecAugment(freq_width=0, time_width=0).train()(x), x)
    with pytest.raises(ValueError, match="freq_masks"):
        SpecAugment(freq_masks=-1)
    with pytest.raises(ValueError, match=r"\[batch, channels"):
        SpecAugment().train()(torch.randn(16, 20))


def test_build_augment_follows_enabled_flag():
    assert AugmentSettings(enabled=False, freq_masks=2).build() is None
    augment = AugmentSettings(enabled=True, freq_masks=1, freq_width=3, time_masks=0, time_width=0).build()
    assert isinstance(augment, SpecAugment) and augment.freq_width == 3


def test_warmup_cosine_schedule():
    factor = warmup_cosine(total_steps=100, warmup_steps=10, min_ratio=0.01)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.01 + 0.99 * 0.5)
    assert factor(100) == pytest.approx(0.01)
    values = [factor(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_parameter_groups_exempt_biases_and_norms():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(2, 1, 5, 5))
    decay, no_decay = parameter_groups(model)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in no_decay["params"]} == {
        id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[3].bias)
    }
    assert no_decay["weight_decay"] == 0.0


def test_recipe_rejects_bad_values():
    with pytest.raises(ValueError, match="train.epochs"):
        Recipe(epochs=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        Recipe(epochs=1, label_smoothing=1.0)
    with pytest.raises(ValueError, match="patience"):
        Recipe(epochs=1, patience=0)


def test_fit_stops_early_and_keeps_the_best_epoch():
    """Random labels: validation accuracy wanders, so early stopping and best-epoch
    selection are exercised; the returned weights must score what the best epoch scored."""
    torch.manual_seed(0)
    x = torch.randn(96, 1, 8, 8)
    train = DataLoader(TensorDataset(x[:64], torch.randint(0, 3, (64,))), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(x[64:], torch.randint(0, 3, (32,))), batch_size=32)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 3))
    recipe = Recipe(epochs=30, patience=3, warmup_epochs=0, label_smoothing=0.0)
    result = fit(model, train_loader=train, val_loader=val, recipe=recipe,
                 optimizer_factory=lambda groups: torch.optim.SGD(groups, lr=0.5, momentum=0.9))
    history = result.history
    assert len(history) == result.epochs_run
    best = max(history, key=lambda row: (row["val_accuracy"], -row["val_loss"]))
    assert result.best_epoch == best["epoch"]
    if result.stopped_early:
        assert result.epochs_run - result.best_epoch == recipe.patience
    loss, accuracy = _run_epoch(model, val, nn.CrossEntropyLoss(), device=torch.device("cpu"))
    assert accuracy == pytest.approx(best["val_accuracy"])
    assert loss == pytest.approx(best["val_loss"], rel=1e-5)
    assert history[0]["lr"] == pytest.approx(0.5 * warmup_cosine(30 * 4, 0, 0.01)(0))
    assert not math.isnan(result.seconds)


@pytest.mark.parametrize("recipe", ["default", "quick"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_every_train_option_composes_and_builds(recipe, optimizer):
    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "arch=plain_conv3x3", "search_space=enas_macro", f"train={recipe}", f"train/optimizer={optimizer}",
        ])
    settings = settings_from(cfg.train, TrainSettings, prefix="train")
    assert settings.recipe().epochs >= 1
    assert settings.batch_size == cfg.data.batch_size
    optimizer_obj = build(settings.optimizer)(parameter_groups(nn.Linear(3, 2)))
    assert type(optimizer_obj).__name__.lower() == optimizer
    assert optimizer_obj.param_groups[1]["weight_decay"] == 0.0
    assert optimizer_obj.param_groups[0]["weight_decay"] > 0.0
    assert isinstance(settings.spec_augment.build(), SpecAugment)


def test_few_steps_per_epoch_draw_a_warning_that_names_the_setting_and_a_batch_size():
    assert few_steps_warning(MIN_STEPS_PER_EPOCH, 64, 640, "train.batch_size") is None
    # ~100 clips: 68 train windows at the default batch of 64 give one step per epoch
    warning = few_steps_warning(1, 64, 68, "train.batch_size")
    assert warning.startswith("only 1 train step(s) per epoch (68 train windows, train.batch_size=64)")
    assert f"set data.batch_size=6 or lower for {MIN_STEPS_PER_EPOCH} steps per epoch" in warning
    assert warning.endswith("(or train.batch_size=6 for this command alone)")
    assert "set data.batch_size=1 " in few_steps_warning(3, 2, 7, "trainer.batch_size")


def test_fit_warns_of_few_steps_per_epoch_under_the_callers_setting(caplog):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(12, 1, 4, 4), torch.randint(0, 2, (12,)))
    loader = DataLoader(data, batch_size=4, drop_last=True)

    def train(batch_setting):
        caplog.clear()
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        fit(model, train_loader=loader, val_loader=loader, recipe=Recipe(epochs=1, warmup_epochs=0),
            optimizer_factory=lambda groups: torch.optim.SGD(groups, lr=0.1), batch_setting=batch_setting)
        return caplog.text

    assert "only 3 train step(s) per epoch (12 train windows, finetune.batch_size=4)" in train("finetune.batch_size")
    assert "train step(s) per epoch" not in train(None)
