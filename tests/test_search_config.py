"""melnas-search configs: every option of every group composes and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from controllers.base import Controller
from nas.io.registry import build_space
from experiments.settings import settings_from
from nas.search.loop import SearchSettings
from nas.search.settings import TrainerSettings
from search_spaces.base import SearchSpace

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_search(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="search", overrides=list(overrides))


def test_every_group_the_search_needs_has_options() -> None:
    for group in ("search_space", "controller", "reward", "trainer", "experiment"):
        assert options(group), f"conf/{group}/ has no option"
    assert {"mobilenetv3", "enas_macro"} <= set(options("search_space"))
    assert {"enas_lstm", "random", "evolution"} <= set(options("controller"))
    assert {"mnas", "mnas_hard", "tunas", "accuracy"} <= set(options("reward"))
    assert "quick" in options("experiment")


def test_defaults_compose_to_valid_settings() -> None:
    cfg = compose_search()
    settings = settings_from(cfg, SearchSettings, skip=("data", "search_space", "controller", "reward"))
    assert settings.trainer.batch_size == cfg.data.batch_size
    assert settings.resume is False and isinstance(settings.seed, int)
    assert settings.latency_table.threads == 1 and settings.latency_table.statistic == "min"


@pytest.mark.parametrize("space", options("search_space"))
def test_every_search_space_builds_its_decisions(space: str) -> None:
    cfg = compose_search(f"search_space={space}")
    built = build_space(OmegaConf.to_container(cfg.search_space, resolve=True))
    assert isinstance(built, SearchSpace) and built.decisions


@pytest.mark.parametrize("controller", options("controller"))
def test_every_controller_builds_from_a_space_s_decisions(controller: str) -> None:
    cfg = compose_search(f"controller={controller}", "search_space=enas_macro")
    space = build_space(OmegaConf.to_container(cfg.search_space, resolve=True))
    built = instantiate(cfg.controller)(space.decisions, seed=1)
    assert isinstance(built, Controller)
    sample = built.sample(2)[0]
    space.arch(sample.values)  # a valid arch of the space


@pytest.mark.parametrize("reward", options("reward"))
def test_every_reward_scores_accuracy_and_latency(reward: str) -> None:
    cfg = compose_search(f"reward={reward}", "reward.target_ms=3")
    fn = instantiate(cfg.reward)
    fast, slow = fn(0.8, 1.0), fn(0.8, 30.0)
    assert isinstance(fast, float) and isinstance(slow, float)
    assert fn(0.9, 2.0) >= fn(0.8, 2.0)  # more accurate never scores lower
    assert slow <= fast  # ten times over the target never scores higher


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_with_every_controller(experiment: str) -> None:
    for controller in options("controller"):
        cfg = compose_search(f"experiment={experiment}", f"controller={controller}", "reward.target_ms=3")
        settings_from(cfg.trainer, TrainerSettings, prefix="trainer")
        assert cfg.reward.target_ms == 3


def test_quick_experiment_shrinks_the_default_search() -> None:
    default, quick = compose_search(), compose_search("experiment=quick")
    for key in ("trainer.epochs", "trainer.final.num_samples", "latency_table.repeats"):
        assert OmegaConf.select(quick, key) < OmegaConf.select(default, key), key
    assert quick.trainer.device == "auto"  # CUDA when present


def test_every_experiment_controller_file_names_an_experiment_and_a_controller() -> None:
    """``optional experiment/controller: ${experiment}_${controller}`` ignores a misnamed file."""
    pairs = {f"{e}_{c}" for e in options("experiment") for c in options("controller")}
    files = options("experiment/controller")
    assert files, "conf/experiment/controller/ is empty"
    assert set(files) <= pairs, f"not <experiment>_<controller>: {sorted(set(files) - pairs)}"


def test_every_experiment_search_space_file_names_an_experiment_and_a_space() -> None:
    """``optional experiment/search_space: ${experiment}_${search_space}`` ignores a misnamed file."""
    pairs = {f"{e}_{s}" for e in options("experiment") for s in options("search_space")}
    files = options("experiment/search_space")
    assert files, "conf/experiment/search_space/ is empty"
    assert set(files) <= pairs, f"not <experiment>_<search_space>: {sorted(set(files) - pairs)}"


@pytest.mark.parametrize("space", ["enas_macro", "mobilenetv3"])
def test_quick_gives_its_space_settings_to_mobilenetv3_only(space: str) -> None:
    """experiment=quick is a budget for any space; its width and MobileNetV3-Small target
    reach mobilenetv3 alone, so another space builds with its own keys."""
    cfg = compose_search("experiment=quick", f"search_space={space}")
    build_space(OmegaConf.to_container(cfg.search_space, resolve=True))
    assert cfg.trainer.epochs == compose_search("experiment=quick").trainer.epochs
    if space == "mobilenetv3":
        assert cfg.search_space.width == 0.5 and cfg.reward.target_ms == "mobilenetv3_small"
    else:
        assert "width" not in cfg.search_space and cfg.reward.target_ms == 0.1
    assert compose_search("experiment=quick", "search_space.width=0.75").search_space.width == 0.75  # command line wins


def test_a_referee_search_is_the_search_as_a_one_arch_enas_search_of_another_seed() -> None:
    from experiments.referee_searches import referee_overrides

    assert compose_search("experiment=quick").trainer.final.referee_searches == 0  # an option, off by default
    # a referee of a random search of seed 3: the same experiment and settings, ENAS one-arch, seed 4, no referees
    given = ["experiment=quick", "controller=random", "seed=3", "controller.foo=1", "trainer.lr=0.1",
             "trainer.stop_after_epochs=1", "resume=true", "trainer.final.referee_searches=2"]
    referee = compose_search(*referee_overrides([o for o in given if o != "controller.foo=1"], 4))
    assert referee_overrides(given, 4)[:2] == ["experiment=quick", "trainer.lr=0.1"]
    assert referee.seed == 4 and referee.trainer.sampling == "controller" and referee.trainer.lr == 0.1
    assert referee.controller._target_.endswith("EnasLstmController") and referee.controller.adam_eps == 1e-8
    assert referee.trainer.final.referee_searches == 0 and referee.trainer.stop_after_epochs is None
    assert not referee.resume
    # the searches of a seed that share one supernet (the demo, the study) share their referees too
    leader = referee_overrides([*given, "trainer.keep_epoch_supernets=true"], 4)
    follower = referee_overrides([*given, "trainer.supernet_from=/runs/seed_3/search_enas_lstm"], 4)
    assert leader == follower == referee_overrides(given, 4)


def test_a_reward_target_naming_no_preset_of_the_space_is_refused_up_front() -> None:
    from nas.search.reward import RewardBuilder

    builder = RewardBuilder(make=lambda **kw: None, target_ms="mobilenetv3_small")
    builder.check(build_space("mobilenetv3"))
    with pytest.raises(ValueError, match=r"reward.target_ms='mobilenetv3_small' is neither .*'enas_macro'.*reward.target_ms=0.1"):
        builder.check(build_space("enas_macro"))


def test_quick_enas_lstm_settings_apply_to_that_controller_only() -> None:
    quick_lstm = compose_search("experiment=quick", "controller=enas_lstm")
    assert quick_lstm.controller.adam_eps == 1e-8 and quick_lstm.controller.baseline_decay == 0.95
    assert compose_search("controller=enas_lstm").controller.adam_eps == 1e-3  # ENAS's own
    assert "adam_eps" not in compose_search("experiment=quick", "controller=evolution").controller
    assert compose_search("experiment=quick", "controller.lr=0.1").controller.lr == 0.1  # command line wins
