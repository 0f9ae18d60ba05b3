"""melnas-demo: its step configs (fast), and the whole journey at tiny settings (slow)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from experiments.compose import compose_step
from experiments.demo_steps import plan_steps, synthesise_if_missing
from nas.io.config_dirs import BUILTIN_CONF_DIR
from tests.test_train_fixtures import write_tone_dataset


def _demo_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        return compose(config_name="demo", overrides=list(overrides))


def test_steps_get_the_demo_data_and_their_own_choices(tmp_path):
    demo = _demo_cfg(f"data.root={tmp_path}/audio", f"data.cache_dir={tmp_path}/cache", "data.n_mels=40")
    search = compose_step("search", ["controller=random", f"experiment={demo.demo.experiment}"], demo.data)
    assert search.data.n_mels == 40 and search.data.root == f"{tmp_path}/audio"
    assert search.hydra.runtime.choices.controller == "random"
    assert search.trainer.batch_size == search.data.batch_size
    train = compose_step("train", ["arch=mobilenetv3_small", f"train={demo.demo.train_recipe}"], demo.data)
    assert train.data.cache_dir == f"{tmp_path}/cache" and train.train.epochs < 60  # quick, not default


def test_demo_defaults_match_the_documented_journey():
    demo = _demo_cfg().demo
    assert list(demo.controllers) == ["enas_lstm", "random"]
    assert demo.experiment == "quick" and demo.train_recipe == "quick"
    assert list(demo.presets) == ["mobilenetv3_small"]


TINY_SEARCH = [
    "search_space=enas_macro", "search_space.num_layers=3", "search_space.filters=8",
    "trainer.epochs=1", "trainer.controller_steps=2", "trainer.archs_per_step=2",
    "trainer.final.num_samples=4", "trainer.final.top_k=3", "latency_table.calibration_archs=2",
    "latency_table.repeats=3", "latency_table.warmup=1", "latency_table.prefill_archs=4",
    "latency_table.min_span_ms=0",
]


def _hydra_list(items: list[str]) -> str:
    """A list of override strings as one Hydra command-line value (quoted: they hold '=')."""
    return "[" + ",".join(f'"{item}"' for item in items) + "]"


@pytest.mark.slow
def test_demo_runs_the_whole_journey(tmp_path):
    """The console command, end to end, on tiny generated audio and tiny settings."""
    root = write_tone_dataset(tmp_path / "audio")
    out = tmp_path / "demo"
    search_overrides = _hydra_list([*TINY_SEARCH, f"latency_table.cache_dir={tmp_path / 'latency'}"])
    command = [
        str(Path(sys.executable).parent / "melnas-demo"),
        f"hydra.run.dir={out}", f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}",
        "data.n_mels=32", "data.num_workers=1", "data.batch_size=16", "demo.experiment=null",
        "demo.progress=false",
        f"demo.search_overrides={search_overrides}",
        f"demo.train_overrides={_hydra_list(['train.epochs=2', 'latency_measure.repeats=3', 'latency_measure.warmup=1'])}",
        f"demo.preset_overrides={_hydra_list(['search_space.width=0.25'])}",
    ]
    # Devices left at auto: the journey as a user runs it, on CUDA where a GPU is present.
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("search_enas_lstm", "search_random"):
        assert (out / name / "best_arch.json").is_file()
        assert (out / name / ".hydra" / "config.yaml").is_file()
    for name in ("train_enas_lstm", "train_random", "train_mobilenetv3_small"):
        assert (out / name / "model.pt").is_file() and (out / name / "metrics.json").is_file()
    origins = {json.loads((out / n / "metrics.json").read_text())["origin"]
               for n in ("train_enas_lstm", "train_random", "train_mobilenetv3_small")}
    assert origins == {"enas_lstm", "random", "preset:mobilenetv3_small"}
    assert f"Pareto plot: {out / 'compare' / 'pareto.png'}" in done.stdout
    assert "| train_enas_lstm | enas_lstm | test |" in done.stdout
    assert (out / "compare" / "pareto.png").is_file()
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["seconds"]["total"] > 0


def test_synthesis_writes_the_bundled_set_but_never_into_a_users_folder(tmp_path):
    tiny_synth = '["synth.files_per_class=1","synth.classes=[piano]","synth.backing_db=null",' \
                 '"synth.min_seconds=1","synth.max_seconds=1",' \
                 '"synth.num_workers=0"]'
    fresh = tmp_path / "fresh"
    cfg = _demo_cfg(f"data.root={fresh}", f"demo.synth_overrides={tiny_synth}", "demo.progress=false")
    synthesise_if_missing(cfg)
    assert [p.parent.name for p in fresh.rglob("*") if p.is_file() and not p.name.startswith(".")] == ["piano"]

    users = write_tone_dataset(tmp_path / "users", files_per_class=1)
    before = sorted(users.rglob("*"))
    synthesise_if_missing(_demo_cfg(f"data.root={users}", f"demo.synth_overrides={tiny_synth}"))
    assert sorted(users.rglob("*")) == before


def test_a_synthesised_set_made_with_other_settings_is_used_as_it_is(tmp_path, caplog):
    """A study pointed at a set the user made with melnas-synth and other settings
    re-rendered it with the study's, deleting two thirds of the files."""
    tiny = ["synth.classes=[piano,flute]", "synth.min_seconds=1", "synth.max_seconds=1", "synth.num_workers=0"]
    root = tmp_path / "mine"
    mine = '["synth.files_per_class=2","synth.backing_db=[-8,-2]",' + ",".join(f'"{o}"' for o in tiny) + "]"
    synthesise_if_missing(_demo_cfg(f"data.root={root}", f"demo.synth_overrides={mine}", "demo.progress=false"))
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.flac")}
    assert len(before) == 4

    others = '["synth.files_per_class=1","synth.backing_db=null",' + ",".join(f'"{o}"' for o in tiny) + "]"
    with caplog.at_level(logging.WARNING):
        synthesise_if_missing(_demo_cfg(f"data.root={root}", f"demo.synth_overrides={others}"))
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.flac")} == before
    assert "files_per_class: 2 there, 1 asked" in caplog.text
    assert "backing_db: [-8.0, -2.0] there, None asked" in caplog.text
    assert f"melnas-synth synth.out_dir={root}" in caplog.text


def test_plan_matches_the_search_budgets_and_wires_winners_to_retraining(tmp_path):
    demo = _demo_cfg("demo.controllers=[enas_lstm,random,evolution]",
                     'demo.preset_overrides=["search_space.width=0.75"]')
    steps = plan_steps(demo, tmp_path)
    assert [s.name for s in steps] == ["search_enas_lstm", "search_random", "search_evolution", "train_enas_lstm",
                                       "train_random", "train_evolution", "train_mobilenetv3_small"]
    searches = [s.cfg for s in steps if s.kind == "search"]
    shared = ("keep_epoch_supernets", "supernet_from")
    budget = [{k: (v if k != "trainer" else {t: w for t, w in v.items() if t not in shared})
               for k, v in c.items() if k not in ("controller", "hydra")} for c in searches]
    assert budget[0] == budget[1] == budget[2]  # the same experiment, trainer, space, reward, data, seed
    # one supernet: the first search keeps it epoch by epoch, the others follow it
    assert searches[0].trainer.keep_epoch_supernets and searches[0].trainer.supernet_from is None
    assert [c.trainer.supernet_from for c in searches[1:]] == [str(tmp_path / "search_enas_lstm")] * 2
    assert {c.hydra.runtime.choices.controller for c in searches} == {"enas_lstm", "random", "evolution"}
    trains = {s.name: s for s in steps if s.kind == "train"}
    assert trains["train_random"].cfg.arch == str(tmp_path / "search_random" / "best_arch.json")
    assert trains["train_mobilenetv3_small"].cfg.search_space.width == 0.75
    assert trains["train_enas_lstm"].cfg.train == trains["train_mobilenetv3_small"].cfg.train  # one recipe


@pytest.mark.parametrize("setting", ['demo.search_overrides=["trainer.sampling=controller"]', "demo.share_supernet=false"])
def test_each_search_trains_its_own_supernet_when_they_would_differ_or_when_told(tmp_path, setting):
    """Under controller sampling each controller trains other archs: no search follows another."""
    steps = [s for s in plan_steps(_demo_cfg(setting), tmp_path) if s.kind == "search"]
    assert len(steps) == 2
    assert not any(s.cfg.trainer.keep_epoch_supernets or s.cfg.trainer.supernet_from for s in steps)


def test_a_study_begun_before_supernets_were_shared_finishes_as_it_began(tmp_path):
    """A leader that ran without keeping its epochs cannot be followed, and a search started
    with its own supernet resumes with it (a resume must match its start)."""
    def started(name: str, *overrides: str) -> None:
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        (tmp_path / name / "checkpoints" / "last.pt").write_bytes(b"")
        (tmp_path / name / "checkpoints" / "started_with.yaml").write_text(yaml.safe_dump(list(overrides)))

    demo = _demo_cfg("demo.controllers=[enas_lstm,random,evolution]")
    started("search_enas_lstm", "controller=enas_lstm")
    searches = [s for s in plan_steps(demo, tmp_path) if s.kind == "search"]
    assert not any(s.cfg.trainer.keep_epoch_supernets or s.cfg.trainer.supernet_from for s in searches)

    (tmp_path / "search_enas_lstm" / "checkpoints" / "supernet_epoch_001.pt").write_bytes(b"")  # it keeps them
    started("search_random", "controller=random")  # begun with its own supernet
    searches = {s.name: s.cfg.trainer for s in plan_steps(demo, tmp_path) if s.kind == "search"}
    assert searches["search_random"].supernet_from is None
    assert searches["search_evolution"].supernet_from == str(tmp_path / "search_enas_lstm")
