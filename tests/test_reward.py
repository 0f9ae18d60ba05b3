"""Rewards: formulas, signs, monotonicity, soft vs hard constraint, hard limit, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra.utils import instantiate

from functools import partial

from nas.search.reward import AccuracyReward, MnasReward, Reward, RewardBuilder, TunasReward
from search_spaces.mobilenetv3 import MobileNetV3Space

REWARD_CONF = Path(__file__).resolve().parents[1] / "conf" / "reward"
REWARD_NAMES = sorted(p.stem for p in REWARD_CONF.glob("*.yaml"))
T = 3.0
ACCURACIES = np.linspace(0.0, 1.0, 11)
UNDER = np.linspace(0.05, 1.0, 20) * T  # within the target, up to T itself
OVER = np.linspace(1.05, 5.0, 20) * T


def from_config(name: str, **overrides) -> Reward:
    """Build a reward exactly as the search does: from its Hydra config."""
    with (REWARD_CONF / f"{name}.yaml").open() as fh:
        cfg = yaml.safe_load(fh)
    cfg.update(target_ms=T, **overrides)
    reward = instantiate(cfg)
    assert isinstance(reward, Reward)
    return reward


def test_every_issue_reward_has_a_config():
    assert set(REWARD_NAMES) >= {"mnas", "mnas_hard", "tunas", "accuracy"}


@pytest.mark.parametrize("name", REWARD_NAMES)
def test_higher_accuracy_raises_the_reward(name):
    reward = from_config(name)
    for latency in np.concatenate([UNDER, OVER]):
        values = [reward(a, latency) for a in ACCURACIES]
        assert np.all(np.diff(values) > 0), (latency, values)


@pytest.mark.parametrize("name", ["mnas", "mnas_hard", "tunas"])
def test_over_the_target_higher_latency_lowers_the_reward(name):
    reward = from_config(name)
    for accuracy in ACCURACIES[1:]:
        values = [reward(accuracy, latency) for latency in OVER]
        assert np.all(np.diff(values) < 0), (accuracy, values)


def test_accuracy_reward_ignores_latency_without_hard_limit():
    reward = from_config("accuracy")
    assert [reward(0.7, latency) for latency in np.concatenate([UNDER, OVER])] == [0.7] * 40


def test_mnas_formula_and_soft_vs_hard_constraint():
    soft, hard = from_config("mnas"), from_config("mnas_hard")
    assert soft(0.8, T) == pytest.approx(0.8) and hard(0.8, T) == pytest.approx(0.8)
    assert soft(0.8, 2 * T) == pytest.approx(0.8 * 2**-0.07)
    assert soft(0.8, T / 2) == pytest.approx(0.8 * 0.5**-0.07)
    assert hard(0.8, 2 * T) == pytest.approx(0.4)
    # soft: being faster than T still pays a little; hard: not at all
    assert np.all(np.diff([soft(0.8, lat) for lat in UNDER]) < 0)
    assert [hard(0.8, lat) for lat in UNDER] == pytest.approx([0.8] * len(UNDER))
    # over the target the hard constraint is far steeper
    assert all(hard(0.8, lat) < soft(0.8, lat) for lat in OVER)


def test_tunas_penalty_is_symmetric_around_the_target():
    reward = from_config("tunas")
    assert reward(0.9, T) == pytest.approx(0.9)
    assert reward(0.9, 2 * T) == pytest.approx(0.8)
    for d in (0.1, 0.5, 0.9):
        assert reward(0.9, T * (1 + d)) == pytest.approx(reward(0.9, T * (1 - d)))
        assert reward(0.9, T * (1 + d)) == pytest.approx(0.9 - 0.1 * d)
    assert np.all(np.diff([reward(0.9, lat) for lat in UNDER]) > 0)  # pulled up to T


@pytest.mark.parametrize("name", REWARD_NAMES)
def test_hard_limit_gives_the_worst_reward_over_the_target(name):
    soft, limited = from_config(name), from_config(name, hard_limit=True)
    lowest_in_target = min(limited(a, lat) for a in ACCURACIES for lat in UNDER)
    assert limited.worst < lowest_in_target
    assert limited.worst <= lowest_in_target - 1.0 + 1e-12  # a clear gap, not a rounding
    for a in ACCURACIES:
        assert [limited(a, lat) for lat in OVER] == [limited.worst] * len(OVER)
        assert [limited(a, lat) for lat in UNDER] == [soft(a, lat) for lat in UNDER]  # T itself passes


def test_hard_limit_floors_are_documented_values():
    assert MnasReward(T, hard_limit=True).worst == -1.0
    assert AccuracyReward(T, hard_limit=True).worst == -1.0
    assert TunasReward(T, hard_limit=True).worst == pytest.approx(-1.1)
    assert TunasReward(T, beta=-0.5, hard_limit=True).worst == pytest.approx(-1.5)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: MnasReward(0.0), "target_ms must be > 0"),
        (lambda: MnasReward(-2.0), "target_ms must be > 0"),
        (lambda: TunasReward(float("nan")), "target_ms must be finite"),
        (lambda: MnasReward(None), "needs target_ms"),
        (lambda: MnasReward(T, alpha=0.07), "alpha must be <= 0"),
        (lambda: MnasReward(T, beta=1.0), "beta must be <= 0"),
        (lambda: TunasReward(T, beta=0.1), "beta must be <= 0"),
        (lambda: AccuracyReward(hard_limit=True), "hard_limit=true needs target_ms"),
    ],
)
def test_bad_settings_are_rejected(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_types_are_rejected():
    with pytest.raises(TypeError, match="hard_limit"):
        MnasReward(T, hard_limit="yes")
    with pytest.raises(TypeError, match="target_ms"):
        TunasReward("fast")


@pytest.mark.parametrize("name", REWARD_NAMES)
def test_bad_inputs_are_rejected(name):
    reward = from_config(name)
    with pytest.raises(ValueError, match="accuracy must be a fraction"):
        reward(87.5, T)
    with pytest.raises(ValueError, match="accuracy must be finite"):
        reward(math.nan, T)
    with pytest.raises(ValueError, match="latency_ms must be > 0"):
        reward(0.5, 0.0)
    with pytest.raises(ValueError, match="latency_ms must be finite"):
        reward(0.5, math.inf)
    assert isinstance(reward(np.float32(0.5), np.float64(T)), float)


# ---- a target named after a preset ----------------------------------------------------

QUICK_SPACE = MobileNetV3Space(width=0.5, kernels=[3, 5], expand_ratios=[3, 6])


def fake_latency_ms(arch) -> float:
    """A stand-in for the latency table: any deterministic function of the arch."""
    return 0.01 * sum(float(v) for k, v in arch.as_dict().items() if k.endswith("_expand"))


def test_a_target_in_milliseconds_is_used_as_it_is():
    reward = RewardBuilder(make=MnasReward, target_ms=0.1)(QUICK_SPACE, fake_latency_ms)
    assert isinstance(reward, MnasReward) and reward.target_ms == 0.1


def test_a_target_named_after_a_preset_is_that_preset_s_predicted_latency():
    builder = RewardBuilder(make=partial(MnasReward, alpha=0.0, beta=-1.0), target_ms="mobilenetv3_small")
    reward = builder(QUICK_SPACE, fake_latency_ms)
    preset_ms = fake_latency_ms(QUICK_SPACE.presets["mobilenetv3_small"])
    assert reward.target_ms == pytest.approx(preset_ms) and (reward.alpha, reward.beta) == (0.0, -1.0)
    assert reward(0.9, preset_ms) == pytest.approx(0.9) and reward(0.9, 2 * preset_ms) < 0.9


def test_a_target_naming_no_preset_of_the_space_says_which_there_are():
    with pytest.raises(ValueError, match=r"target_ms='mobilenetv3_large'.*presets: \['mobilenetv3_small'\]"):
        RewardBuilder(make=MnasReward, target_ms="mobilenetv3_large")(QUICK_SPACE, fake_latency_ms)
