"""melnas-search end to end on tiny generated audio, through the real data pipeline,
spaces, controllers, rewards and latency tables: outputs, resume equivalence
(in-process stop and a real SIGKILL), multirun. One fast smoke run; the rest is slow."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.cli import HydraRun
from experiments.search import search as search_app
from nas.data.dataset import open_prepared
from nas.data.prepare import prepare_dataset
from nas.errors import MelnasError
from nas.io.checkpoint import CheckpointError, load_checkpoint
from nas.io.registry import build_space
from nas.search.loop import CHECKPOINT
from nas.search.reward import MnasReward

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
CLASSES = {"low": 220.0, "high": 1760.0, "noise": None}


def write_tiny_audio(root: Path) -> None:
    """3 classes x 4 recordings x 1.5 s at 8 kHz: sines at two pitches and noise."""
    rng = np.random.default_rng(0)
    sr = 8000
    t = np.arange(int(1.5 * sr)) / sr
    for label, freq in CLASSES.items():
        (root / label).mkdir(parents=True)
        for i in range(4):
            tone = np.sin(2 * np.pi * freq * (1 + 0.03 * i) * t) if freq else rng.standard_normal(t.size)
            signal_ = 0.3 * tone + 0.01 * rng.standard_normal(t.size)
            sf.write(root / label / f"{i}.wav", signal_.astype(np.float32), sr)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("search")
    write_tiny_audio(root / "audio")
    return root


TINY_MOBILENET = ["search_space=mobilenetv3", "search_space.width=0.25", "search_space.kernels=[3,5]",
                  "search_space.expand_ratios=[3]"]
TINY_ENAS = ["search_space=enas_macro", "search_space.num_layers=3", "search_space.filters=8"]


def tiny_overrides(workdir: Path, *extra: str, space: list[str] = TINY_MOBILENET, device: str = "cpu") -> list[str]:
    """A search that runs in seconds: 0.5 s windows of 16 mels, a tiny space. On the CPU
    unless told: resume == uninterrupted is bit-exact there; CUDA kernels need not be."""
    return [
        f"data.root={workdir / 'audio'}",
        f"data.cache_dir={workdir / 'cache'}",
        "data.sample_rate=8000",
        "data.window_seconds=0.5",
        "data.n_mels=16",
        "data.splits={train: 0.5, val: 0.25, test: 0.25}",
        "data.num_workers=1",
        "reward.target_ms=1.0",
        "trainer.epochs=2",
        "trainer.batch_size=8",
        "trainer.val_batch_size=8",
        "trainer.controller_steps=2",
        "trainer.archs_per_step=3",
        "trainer.final.num_samples=4",
        "trainer.final.top_k=3",
        "trainer.progress=false",
        f"trainer.device={device}",
        "trainer.threads=1",
        f"latency_table.cache_dir={workdir / 'latency'}",
        "latency_table.calibration_archs=2",
        "latency_table.warmup=0",
        "latency_table.repeats=1",
        "latency_table.prefill_archs=4",
        "latency_table.min_span_ms=0",
        *space,
        *extra,
    ]


def search(workdir: Path, run_dir: Path, *extra: str, space: list[str] = TINY_MOBILENET, device: str = "cpu"):
    """The search as ``melnas-search`` runs it: the config without its hydra node, and the
    config-group choices (the controller's option name labels the log)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="search", overrides=tiny_overrides(workdir, *extra, space=space, device=device),
                      return_hydra_config=True)
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return search_app(job, HydraRun.composed(cfg, run_dir))


@pytest.fixture(scope="module")
def uninterrupted(workdir: Path) -> Path:
    run_dir = workdir / "uninterrupted"
    outcome = search(workdir, run_dir)
    assert outcome.finished and outcome.epochs_done == 2
    return run_dir


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "search_log.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path) -> None:
    """Same result files byte for byte, same final supernet, controller and optimizer."""
    for name in ("best_arch.json", "top_archs.json", "search_log.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ca, cb = load_checkpoint(a / CHECKPOINT), load_checkpoint(b / CHECKPOINT)
    assert ca["supernet"].keys() == cb["supernet"].keys()
    assert all(torch.equal(ca["supernet"][k], cb["supernet"][k]) for k in ca["supernet"])
    assert repr(ca["controller"]) == repr(cb["controller"])
    assert repr(ca["optimizer"]) == repr(cb["optimizer"])
    assert without_timings(ca["state"]) == without_timings(cb["state"])


def without_timings(state: dict) -> dict:
    history = [{k: v for k, v in epoch.items() if not k.endswith("_s")} for epoch in state["history"]]
    return {**state, "history": history}


def test_smoke_search_in_the_enas_macro_space(workdir: Path, tmp_path: Path) -> None:
    """One tiny epoch in the space with skip connections (InputChoice decisions)."""
    threads = torch.get_num_threads()
    outcome = search(
        workdir, tmp_path / "smoke", "trainer.epochs=1", f"trainer.threads={threads + 1}", "trainer.controller_steps=1", "trainer.archs_per_step=2",
        "trainer.final.num_samples=2", "trainer.final.top_k=2", "trainer.final.bn_mode=batch",
        space=TINY_ENAS,
    )
    assert outcome.finished and outcome.best is not None
    assert torch.get_num_threads() == threads  # trainer.threads applies to the search only
    best = json.loads((tmp_path / "smoke" / "best_arch.json").read_text())
    assert best["space"] == "enas_macro" and best["space_config"]["num_layers"] == 3
    assert build_space(best["space_config"]).load_arch(tmp_path / "smoke" / "best_arch.json").hash == best["hash"]
    assert len(read_log(tmp_path / "smoke")) == 2 + len({r["hash"] for r in read_log(tmp_path / "smoke")[2:]})


@pytest.mark.slow
def test_search_writes_every_output(uninterrupted: Path) -> None:
    best = json.loads((uninterrupted / "best_arch.json").read_text())
    top = json.loads((uninterrupted / "top_archs.json").read_text())
    assert {"space", "choices", "space_config", "accuracy", "latency_ms", "reward"} <= set(best)
    assert top[0] == best and 1 <= len(top) <= 3
    assert [t["reward"] for t in top] == sorted((t["reward"] for t in top), reverse=True)
    # The arch file rebuilds: its space_config makes the space, the space reads the file.
    space = build_space(best["space_config"])
    arch = space.load_arch(uninterrupted / "best_arch.json")
    assert arch.hash == best["hash"]
    model = space.build(arch, num_classes=3, input_shape=(1, 16, 32))
    assert model(torch.zeros(2, 1, 16, 32)).shape == (2, 3)

    log = read_log(uninterrupted)
    controller_lines = [r for r in log if r["phase"] == "controller"]
    assert {r["controller"] for r in log} == {"enas_lstm"}
    final_lines = [r for r in log if r["phase"] == "final"]
    assert len(controller_lines) == 2 * 2 * 3  # epochs x K x M
    assert {r["epoch"] for r in controller_lines} == {1, 2}
    assert best["hash"] in {r["hash"] for r in final_lines}
    assert len({r["hash"] for r in final_lines}) == len(final_lines)  # deduplicated
    for r in log:
        assert {"arch", "arch_str", "hash", "accuracy", "latency_ms", "reward", "phase", "epoch", "controller"} <= set(r)
        assert 0.0 <= r["accuracy"] <= 1.0 and r["latency_ms"] > 0
    summary = json.loads((uninterrupted / "search_summary.json").read_text())
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2]
    assert all(e["shared_s"] > 0 and e["controller_s"] > 0 for e in summary["epochs"])
    assert list((uninterrupted / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_tensorboard_holds_the_promised_curves(uninterrupted: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(uninterrupted / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/accuracy", "controller/reward_mean", "controller/entropy", "epoch/val_accuracy", "epoch/reward_mean", "epoch/reward_max",
                "epoch/entropy", "epoch/latency_ms", "epoch/shared_s", "epoch/controller_s"):
        assert tag in scalars, tag
    assert any(t.startswith("epoch/update_") and "baseline" in t for t in scalars)
    assert any(t.startswith("choice_prob/l0_kernel/") for t in scalars)
    assert "best_arch_so_far/text_summary" in events.Tags()["tensors"]


@pytest.mark.slow
@pytest.mark.parametrize("controller", ["enas_lstm", "evolution"])
def test_stopped_and_resumed_run_ends_like_an_uninterrupted_one(
    workdir: Path, uninterrupted: Path, controller: str, tmp_path: Path
) -> None:
    reference = uninterrupted
    if controller != "enas_lstm":
        reference = tmp_path / "reference"
        search(workdir, reference, f"controller={controller}")
    run_dir = tmp_path / "stopped"
    first = search(workdir, run_dir, f"controller={controller}", "trainer.stop_after_epochs=1")
    assert not first.finished and first.epochs_done == 1
    assert not (run_dir / "best_arch.json").exists()
    with pytest.raises(ValueError, match="resume=true"):
        search(workdir, run_dir, f"controller={controller}")
    with pytest.raises(CheckpointError, match=r"1 setting\(s\) changed: trainer.epochs: 2 -> 3\. `melnas-search "
                                              r"resume=true hydra.run.dir=.*stopped` continues it with its own settings"):
        search(workdir, run_dir, f"controller={controller}", "resume=true", "trainer.epochs=3")
    resumed = search(workdir, run_dir, f"controller={controller}", "resume=true")
    assert resumed.finished and resumed.epochs_done == 2
    assert_same_run(reference, run_dir)


@pytest.mark.slow
def test_killed_during_the_second_epoch_and_resumed_ends_like_an_uninterrupted_run(
    workdir: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "experiments.search", *tiny_overrides(workdir), f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = run_dir / "search_log.jsonl"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if log.exists() and '"epoch": 2' in log.read_text():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    output = proc.communicate()[0].decode()
    assert proc.returncode == -signal.SIGKILL, f"the search was not killed mid-run:\n{output}"
    assert load_checkpoint(run_dir / CHECKPOINT)["state"]["epoch"] == 1, "killed after the second epoch ended"
    assert '"epoch": 2' in log.read_text()  # lines of the lost epoch, to be dropped on resume

    # The resume names only the run: it takes the overrides the run was started with.
    resume = [sys.executable, "-m", "experiments.search", "resume=true", f"hydra.run.dir={run_dir}"]
    subprocess.run(resume, cwd=tmp_path, env=env, check=True, capture_output=True)
    assert_same_run(uninterrupted, run_dir)
    recorded = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    assert set(tiny_overrides(workdir)) <= set(recorded)  # the run's saved config is the run's, not the bare resume's
    # TensorBoard shows each step once: the killed epoch's events are purged on resume.
    for tag in ("train/loss", "controller/reward_mean", "epoch/reward_mean"):
        assert scalar_steps(run_dir, tag) == scalar_steps(uninterrupted, tag), tag


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


@pytest.mark.slow
def test_controller_warmup_skips_the_first_controller_steps(workdir: Path, tmp_path: Path) -> None:
    outcome = search(workdir, tmp_path / "warmup", "trainer.epochs=1", "trainer.controller_warmup=0.5")
    controller_lines = [r for r in read_log(tmp_path / "warmup") if r["phase"] == "controller"]
    assert len(controller_lines) == 3  # K=2 steps, the first one a warm-up step, M=3
    assert "reward_mean" in outcome.history[0]


@pytest.mark.slow
def test_multirun_sweep_with_the_basic_launcher(workdir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "experiments.search", "-m", *tiny_overrides(workdir, "trainer.epochs=1"),
               "controller=evolution,random", "reward.target_ms=3", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True)
    controllers = set()
    for job in ("0", "1"):
        best = json.loads((sweep / job / "best_arch.json").read_text())
        controllers.add(best["controller"])
        assert (sweep / job / ".hydra" / "config.yaml").is_file()
    assert controllers == {"evolution", "random"}


def test_a_reward_target_named_after_a_preset_is_its_predicted_latency(workdir: Path, tmp_path: Path, caplog) -> None:
    """``reward.target_ms=mobilenetv3_small``: every logged reward uses that preset's latency."""
    with caplog.at_level(logging.INFO, logger="melnas.search"):
        outcome = search(workdir, tmp_path / "run", "reward.target_ms=mobilenetv3_small", "trainer.epochs=1",
                         "trainer.controller_steps=1", "trainer.archs_per_step=2", "trainer.final.num_samples=2",
                         "trainer.final.top_k=2")
    assert outcome.finished
    found = re.search(r"reward target ([0-9.e-]+) ms \(mobilenetv3_small's predicted latency\)", caplog.text)
    assert found, caplog.text
    reward = MnasReward(float(found.group(1)))  # conf/reward/mnas.yaml's exponents
    records = [r for r in read_log(tmp_path / "run") if "reward" in r]
    assert records and all(r["reward"] == pytest.approx(reward(r["accuracy"], r["latency_ms"]), rel=1e-4) for r in records)


def test_search_runs_on_a_complete_cache_when_data_root_is_gone(tmp_path: Path, caplog) -> None:
    """A prepared cache is enough: the search says that the inputs were not re-checked."""
    write_tiny_audio(tmp_path / "audio")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        data = compose(config_name="search", overrides=tiny_overrides(tmp_path)).data
    prepare_dataset(data, progress=False)
    shutil.rmtree(tmp_path / "audio")
    with caplog.at_level(logging.WARNING, logger="nas.data.prepare"):
        outcome = search(tmp_path, tmp_path / "run", "trainer.epochs=1", "trainer.controller_steps=1",
                         "trainer.archs_per_step=2", "trainer.final.num_samples=2", "trainer.final.top_k=2")
    assert outcome.finished and outcome.best is not None
    assert f"inputs were not re-checked: data.root={tmp_path / 'audio'} is missing" in caplog.text


def test_under_the_sandwich_rule_every_controller_trains_the_same_supernet(workdir: Path, tmp_path: Path) -> None:
    """The shared weights of a sandwich search come from the run seed alone, so ENAS and
    random search of one seed judge archs with one supernet and differ only in their
    picks. (Running statistics are left out: scoring in batch mode updates them.)"""
    weights = {}
    for controller in ("random", "enas_lstm"):
        run_dir = tmp_path / controller
        assert search(workdir, run_dir, f"controller={controller}", "trainer.sampling=sandwich").finished
        state = load_checkpoint(run_dir / CHECKPOINT)["supernet"]
        weights[controller] = {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}
    assert weights["random"].keys() == weights["enas_lstm"].keys()
    assert all(torch.equal(weights["random"][k], weights["enas_lstm"][k]) for k in weights["random"])


def test_spec_augment_masks_the_shared_steps_and_resumes_exactly(workdir: Path, uninterrupted: Path, tmp_path: Path) -> None:
    """``trainer.spec_augment`` reaches the shared steps (the supernet ends elsewhere than
    the unaugmented run of the same seed), and its masks come from the checkpointed torch
    stream, so a stopped and resumed augmented run ends like an uninterrupted one."""
    augmented = tmp_path / "augmented"
    assert search(workdir, augmented, "trainer.spec_augment.enabled=true").finished
    plain = load_checkpoint(uninterrupted / CHECKPOINT)["supernet"]
    masked = load_checkpoint(augmented / CHECKPOINT)["supernet"]
    moved = max(float((masked[k].float() - plain[k].float()).abs().max()) for k in plain if "num_batches" not in k)
    assert moved > 1e-3, "the augmented run trained the same supernet: the masks never reached the shared steps"

    stopped = tmp_path / "stopped"
    assert not search(workdir, stopped, "trainer.spec_augment.enabled=true", "trainer.stop_after_epochs=1").finished
    assert search(workdir, stopped, "trainer.spec_augment.enabled=true", "resume=true").finished
    assert_same_run(augmented, stopped)


def finished_copy(workdir: Path, source: Path, target: Path, *extra: str) -> Path:
    """A copy of a finished tiny search, with the ``.hydra/config.yaml`` melnas-search writes
    (what makes a run directory a referee)."""
    shutil.copytree(source, target)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="search", overrides=tiny_overrides(workdir, *extra))
    (target / ".hydra").mkdir()
    OmegaConf.save(cfg, target / ".hydra" / "config.yaml")
    return target


def final_scores(run_dir: Path) -> dict[str, float]:
    return {r["arch_str"]: r["accuracy"] for r in read_log(run_dir) if r["phase"] == "final"}


def test_referees_rescore_a_finished_searchs_candidates(workdir: Path, uninterrupted: Path, tmp_path: Path) -> None:
    """Resuming a finished search with ``trainer.final.referees`` re-runs its final phase
    alone. With the run itself as the referee every candidate keeps its score (the mean of
    two equal scores); with another seed's supernet each score becomes the mean of two val
    accuracies (so twice it, in correct windows, is a whole number) and some change."""
    own = final_scores(uninterrupted)
    other = tmp_path / "other"
    assert search(workdir, other, "seed=1").finished
    other = finished_copy(workdir, other, tmp_path / "referee_other", "seed=1")
    itself = finished_copy(workdir, uninterrupted, tmp_path / "referee_itself")
    for referee, run_dir in ((itself, tmp_path / "judged_by_itself"), (other, tmp_path / "judged_by_other")):
        shutil.copytree(uninterrupted, run_dir)
        assert search(workdir, run_dir, "resume=true", f"trainer.final.referees=[{referee}]").finished
        assert load_checkpoint(run_dir / CHECKPOINT)["state"]["train_step"] == \
            load_checkpoint(uninterrupted / CHECKPOINT)["state"]["train_step"]  # nothing trained again
    by_itself, by_other = final_scores(tmp_path / "judged_by_itself"), final_scores(tmp_path / "judged_by_other")
    assert by_itself.keys() == by_other.keys() == own.keys()
    assert all(by_itself[a] == pytest.approx(own[a], abs=1e-9) for a in own)
    val_windows = len(open_prepared(workdir / "cache").rows("val"))
    assert all(abs(2 * by_other[a] * val_windows - round(2 * by_other[a] * val_windows)) < 1e-6 for a in own)
    assert any(by_other[a] != pytest.approx(own[a], abs=1e-9) for a in own)
    # a fresh run with a referee trains exactly as one without: loading the referees
    # must not move the generator that draws the dropout masks
    fresh = tmp_path / "fresh_with_referee"
    assert search(workdir, fresh, f"trainer.final.referees=[{other}]").finished
    trained = [r for r in read_log(uninterrupted) if r["phase"] == "controller"]
    assert [r for r in read_log(fresh) if r["phase"] == "controller"] == trained


def test_refit_rescores_a_finished_searchs_candidates(workdir: Path, uninterrupted: Path, tmp_path: Path) -> None:
    """Resuming a finished search with ``trainer.final.refit_examples`` re-runs its final
    phase alone: the same candidates, each scored with its own refitted output layer (a val
    accuracy still), some scores changed, and nothing trained again."""
    own = final_scores(uninterrupted)
    run_dir = tmp_path / "refit"
    shutil.copytree(uninterrupted, run_dir)
    assert search(workdir, run_dir, "resume=true", "trainer.final.refit_examples=24").finished
    assert load_checkpoint(run_dir / CHECKPOINT)["state"]["train_step"] == \
        load_checkpoint(uninterrupted / CHECKPOINT)["state"]["train_step"]
    refit = final_scores(run_dir)
    assert refit.keys() == own.keys()
    val_windows = len(open_prepared(workdir / "cache").rows("val"))
    assert all(abs(refit[a] * val_windows - round(refit[a] * val_windows)) < 1e-6 for a in own)
    assert any(refit[a] != pytest.approx(own[a], abs=1e-9) for a in own)


def test_referee_searches_are_trained_once_shared_by_the_seeds_searches_and_picked_with(
        workdir: Path, uninterrupted: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``trainer.final.referee_searches=1``: the search first trains the one-arch ENAS search
    of seed + 1 with its other settings (the same run as melnas-search would make of
    ``controller=enas_lstm trainer.sampling=controller seed=1``), trains itself exactly as
    without it, and picks by the mean score of the two supernets; a search of another
    controller and the same seed reuses that referee instead of training it again."""
    refs = tmp_path / "refs"
    with_referee = ("trainer.final.referee_searches=1", f"trainer.final.referee_dir={refs}")
    assert search(workdir, tmp_path / "enas", *with_referee).finished
    (referee,) = [p for p in refs.iterdir() if p.is_dir()]
    assert referee.name.startswith("seed_1-")
    summary = json.loads((tmp_path / "enas" / "search_summary.json").read_text())
    assert summary["final_referees"] == [str(referee)]
    plain_run = tmp_path / "one_arch_seed_1"
    assert search(workdir, plain_run, "controller=enas_lstm", "trainer.sampling=controller", "seed=1").finished
    assert read_log(referee) == read_log(plain_run)
    controller_phase = [r for r in read_log(uninterrupted) if r["phase"] == "controller"]
    assert [r for r in read_log(tmp_path / "enas") if r["phase"] == "controller"] == controller_phase
    own, picked = final_scores(uninterrupted), final_scores(tmp_path / "enas")
    assert picked.keys() == own.keys() and any(picked[a] != pytest.approx(own[a], abs=1e-9) for a in own)
    trained_at = (referee / CHECKPOINT).stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="melnas.search"):
        assert search(workdir, tmp_path / "random", "controller=random", *with_referee).finished
    assert (referee / CHECKPOINT).stat().st_mtime_ns == trained_at
    assert "referee 1/1: the one-arch ENAS search of seed 1 is done already" in caplog.text
    assert json.loads((tmp_path / "random" / "search_summary.json").read_text())["final_referees"] == [str(referee)]


def test_an_interrupted_referee_search_continues_from_its_checkpoint(
        workdir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A search stopped while it trained its referee (here: the referee's run dir holds one
    epoch's checkpoint) continues the referee where it stopped when run again, and the
    referee ends as an uninterrupted one-arch search of its seed."""
    from experiments.compose import compose_config, compose_step
    from experiments.referee_searches import referee_overrides, referee_run_dir

    refs = tmp_path / "refs"
    with_referee = ("trainer.final.referee_searches=1", f"trainer.final.referee_dir={refs}")
    overrides = tiny_overrides(workdir, *with_referee)
    data = compose_config("search", overrides).data
    prepare_dataset(OmegaConf.to_container(data, resolve=True), progress=False)
    referee_cfg = compose_step("search", referee_overrides(overrides, 1), data)
    run_dir = referee_run_dir(referee_cfg, open_prepared(workdir / "cache").split_identity, refs.resolve())
    stopped = search(workdir, run_dir, "controller=enas_lstm", "trainer.sampling=controller", "seed=1",
                     "trainer.stop_after_epochs=1")
    assert not stopped.finished and (run_dir / CHECKPOINT).is_file()
    with caplog.at_level(logging.INFO, logger="melnas.search"):
        assert search(workdir, tmp_path / "run", *with_referee).finished
    assert "referee 1/1: continuing the one-arch ENAS search of seed 1" in caplog.text
    uninterrupted_referee = tmp_path / "one_arch_seed_1"
    assert search(workdir, uninterrupted_referee, "controller=enas_lstm", "trainer.sampling=controller", "seed=1").finished
    assert read_log(run_dir) == read_log(uninterrupted_referee)


def test_a_search_of_other_splits_is_refused_as_referee_and_for_resume(workdir: Path, tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """The cache path does not identify the data: preparing the same cache again with another
    ``data.seed``, or after a recording was added, gives other splits. A referee or a resumed
    run that trained on the old splits would score or train on today's val recordings.
    Touched recordings and a rebuilt cache with the same splits are the same data."""
    audio = tmp_path / "audio"
    shutil.copytree(workdir / "audio", audio)
    mine = [f"data.root={audio}", f"data.cache_dir={tmp_path / 'cache'}"]
    assert search(workdir, tmp_path / "referee", *mine).finished
    assert "only 3 train step(s) per epoch (30 train windows, trainer.batch_size=8)" in caplog.text  # the tiny set
    referee = finished_copy(workdir, tmp_path / "referee", tmp_path / "referee_run", *mine)
    stopped = tmp_path / "stopped"
    assert not search(workdir, stopped, *mine, "trainer.stop_after_epochs=1").finished
    with pytest.raises(MelnasError, match=r"trainer.final.referees: .*referee_run trained on other splits than "
                                          r".*cache holds now: .*run its search again on this data"):
        search(workdir, tmp_path / "other_splits", *mine, "data.seed=1", f"trainer.final.referees=[{referee}]")
    assert not (tmp_path / "other_splits" / CHECKPOINT).exists()
    added = audio / "noise" / "4.wav"
    sf.write(added, (0.3 * np.random.default_rng(1).standard_normal(12000)).astype(np.float32), 8000)
    with pytest.raises(MelnasError, match=r"resume=true: .*stopped trained on other splits than .*put the recordings"):
        search(workdir, stopped, *mine, "resume=true")
    added.unlink()
    os.utime(audio / "low" / "0.wav")  # a newer modification time: the cache is built again, with the same splits
    assert search(workdir, stopped, *mine, "resume=true").finished
    assert search(workdir, tmp_path / "refereed", *mine, f"trainer.final.referees=[{referee}]").finished


def test_a_referee_of_another_space_is_refused_before_training(workdir: Path, uninterrupted: Path, tmp_path: Path) -> None:
    wider = finished_copy(workdir, uninterrupted, tmp_path / "wider", "search_space.width=0.5")
    with pytest.raises(MelnasError, match=r"trainer.final.referees: .*wider searched with another search_space \(width: 0.5 there, 0.25 here\)"):
        search(workdir, tmp_path / "run", f"trainer.final.referees=[{wider}]")
    assert not (tmp_path / "run" / CHECKPOINT).exists()
    with pytest.raises(MelnasError, match=r"trainer.final.referees: .*nowhere is not a directory melnas-search wrote"):
        search(workdir, tmp_path / "run2", f"trainer.final.referees=[{tmp_path / 'nowhere'}]")
