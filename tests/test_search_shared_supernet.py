"""One supernet for every controller of a seed (``trainer.keep_epoch_supernets`` and
``trainer.supernet_from``, nas/search/shared_supernet.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from nas.errors import MelnasError
from nas.io.checkpoint import load_checkpoint
from nas.search.loop import CHECKPOINT
from nas.search.shared_supernet import snapshot_path, training_identity
from tests.test_search import read_log, search, workdir  # noqa: F401 (fixture)

SANDWICH = "trainer.sampling=sandwich"


@pytest.fixture(scope="module")
def leader(workdir: Path) -> Path:  # noqa: F811 (fixture)
    """An ENAS search under the sandwich rule that keeps its epochs' shared weights."""
    run_dir = workdir / "leader"
    assert search(workdir, run_dir, "controller=enas_lstm", SANDWICH, "trainer.keep_epoch_supernets=true").finished
    return run_dir


def test_a_follower_ends_exactly_like_the_search_that_trains_its_own_supernet(
        workdir: Path, leader: Path, tmp_path: Path) -> None:  # noqa: F811 (fixture)
    """Random search following the ENAS search's supernet scores and picks the archs that
    random search training its own supernet does, and holds the same weights at the end:
    the same computation, done once."""
    assert [snapshot_path(leader, e).is_file() for e in range(3)] == [True, True, False]
    follower, own = tmp_path / "follower", tmp_path / "own"
    assert search(workdir, follower, "controller=random", SANDWICH, f"trainer.supernet_from={leader}").finished
    assert search(workdir, own, "controller=random", SANDWICH).finished
    assert read_log(follower) == read_log(own)
    assert (follower / "best_arch.json").read_text() == (own / "best_arch.json").read_text()
    mine, theirs = load_checkpoint(follower / CHECKPOINT), load_checkpoint(own / CHECKPOINT)
    assert all(torch.equal(mine["supernet"][k], theirs["supernet"][k]) for k in theirs["supernet"])
    assert mine["state"]["train_step"] == theirs["state"]["train_step"]
    assert [e["train_loss"] for e in mine["state"]["history"]] == [e["train_loss"] for e in theirs["state"]["history"]]
    assert all("shared_trained_s" in e for e in mine["state"]["history"])


def test_a_stopped_follower_resumes_and_ends_like_an_uninterrupted_one(
        workdir: Path, leader: Path, tmp_path: Path) -> None:  # noqa: F811 (fixture)
    follow = ("controller=random", SANDWICH, f"trainer.supernet_from={leader}")
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert search(workdir, whole, *follow).finished
    assert not search(workdir, stopped, *follow, "trainer.stop_after_epochs=1").finished
    assert search(workdir, stopped, *follow, "resume=true").finished
    assert read_log(stopped) == read_log(whole)


def test_a_finished_follower_re_picks_without_its_source(workdir: Path, leader: Path, tmp_path: Path) -> None:  # noqa: F811
    """The final phase alone needs no source: a finished follower re-picks after it is gone."""
    source, follower = tmp_path / "source", tmp_path / "follower"
    shutil.copytree(leader, source)
    assert search(workdir, follower, "controller=random", SANDWICH, f"trainer.supernet_from={source}").finished
    shutil.rmtree(source)
    assert search(workdir, follower, "controller=random", SANDWICH, f"trainer.supernet_from={source}",
                  "resume=true", "trainer.final.refit_examples=8").finished


def test_a_follower_refuses_a_supernet_trained_otherwise(workdir: Path, leader: Path, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(MelnasError, match=r"trainer\.lr: 0\.05 there, 0\.1 here"):
        search(workdir, tmp_path / "lr", "controller=random", SANDWICH, "trainer.lr=0.1",
               f"trainer.supernet_from={leader}")
    with pytest.raises(MelnasError, match=r"trainer\.sampling: 'sandwich' there, 'uniform' here"):
        search(workdir, tmp_path / "uniform", "controller=random", "trainer.sampling=uniform",
               f"trainer.supernet_from={leader}")


def test_a_follower_names_the_epoch_its_source_has_not_written(workdir: Path, leader: Path, tmp_path: Path) -> None:  # noqa: F811
    partial = tmp_path / "partial"
    shutil.copytree(leader, partial)
    snapshot_path(partial, 1).unlink()
    with pytest.raises(MelnasError, match=r"no shared weights after epoch 2 .*keep_epoch_supernets=true"):
        search(workdir, tmp_path / "f", "controller=random", SANDWICH, f"trainer.supernet_from={partial}")
    unkept = tmp_path / "unkept"
    assert search(workdir, unkept, "controller=enas_lstm", SANDWICH).finished
    with pytest.raises(MelnasError, match=r"ran that epoch without trainer\.keep_epoch_supernets=true"):
        search(workdir, tmp_path / "h", "controller=random", SANDWICH, f"trainer.supernet_from={unkept}")
    with pytest.raises(MelnasError, match=r"no search there"):
        search(workdir, tmp_path / "g", "controller=random", SANDWICH, f"trainer.supernet_from={tmp_path / 'nowhere'}")


def test_the_controller_sampling_cannot_follow_another_supernet(workdir: Path, leader: Path, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match=r"trainer\.supernet_from with trainer\.sampling=controller"):
        search(workdir, tmp_path / "c", "trainer.sampling=controller", f"trainer.supernet_from={leader}")


def test_only_settings_after_the_shared_training_may_differ() -> None:
    identity = {"seed": 0, "trainer.lr": 0.05, "trainer.final.top_k": 5, "controller._target_": "x", "trainer.bn_mode": "batch",
                "reward.target_ms": 1.0, "trainer.controller_steps": 20, "trainer.supernet_from": "/a",
                "latency_table.repeats": 20, "trainer.controller_steps_extra": 1}
    assert training_identity(identity) == {"seed": 0, "trainer.lr": 0.05, "trainer.controller_steps_extra": 1}


def test_under_the_budget_draw_the_reward_and_latency_table_shape_the_supernet() -> None:
    """sandwich_draw=budget draws the training archs near the reward's target, as the latency
    table predicts them: a follower must share both."""
    identity = {"trainer.sampling": "sandwich", "trainer.sandwich_draw": "budget", "reward.target_ms": 1.0,
                "latency_table.repeats": 20, "controller._target_": "x", "trainer.final.top_k": 5}
    assert training_identity(identity) == {"trainer.sampling": "sandwich", "trainer.sandwich_draw": "budget",
                                           "reward.target_ms": 1.0, "latency_table.repeats": 20}
    uniform = {**identity, "trainer.sandwich_draw": "uniform"}
    assert training_identity(uniform) == {"trainer.sampling": "sandwich", "trainer.sandwich_draw": "uniform"}


def test_the_budget_draw_needs_a_latency_target(workdir: Path, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match=r"trainer\.sandwich_draw=budget .* set reward\.target_ms"):
        search(workdir, tmp_path / "b", SANDWICH, "trainer.sandwich_draw=budget", "reward=accuracy",
               "reward.target_ms=null")


def test_a_search_trains_its_supernet_on_the_budget_draw(workdir: Path, tmp_path: Path) -> None:  # noqa: F811
    """The draw runs through the search, and its random search follows the supernet as any sandwich does."""
    budget = [SANDWICH, "trainer.sandwich_draw=budget", "trainer.sandwich_band=[0.5,1.0]"]
    assert search(workdir, tmp_path / "enas", *budget, "trainer.keep_epoch_supernets=true").finished
    assert search(workdir, tmp_path / "random", *budget, "controller=random",
                  f"trainer.supernet_from={tmp_path / 'enas'}").finished
    with pytest.raises(MelnasError, match=r"reward\.target_ms: .* there, .* here"):
        search(workdir, tmp_path / "other", *budget, "controller=random", "reward.target_ms=0.05",
               f"trainer.supernet_from={tmp_path / 'enas'}")
