"""The edge: config -> typed settings (experiments.settings) and the one CLI wrapper
(experiments.cli) every console command runs in."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.cli import run_cli
from experiments.settings import settings_from
from nas.data.errors import DataError
from nas.errors import MelnasError
from nas.io.checkpoint import CheckpointError

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
REQUIRED = {"adapt": ["model=m.pt", "target_ratio=0.5"], "eval": ["model=m.pt"], "train": ["arch=mobilenetv3_small"],
            "cv": ["arch=mobilenetv3_small"],
            # melnas-rank takes its data settings from the search run, as experiments/rank.py does
            "rank": ["run=outputs/search/x", "+data.batch_size=64"]}


@dataclass(frozen=True)
class Inner:
    size: int = 1
    rate: float = 0.5


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    limit: int | None = None


# ---- settings_from ------------------------------------------------------------------


def test_settings_fill_nested_dataclasses_and_resolve_interpolations():
    node = OmegaConf.create({"name": "x", "inner": {"size": "${limit}", "rate": 1}, "limit": 3})
    settings = settings_from(node, Outer)
    assert settings == Outer(name="x", inner=Inner(size=3, rate=1.0), limit=3)
    assert isinstance(settings.inner.rate, float)


@pytest.mark.parametrize("values, message", [
    ({"name": "x", "inner": {"sise": 2}}, r"unknown setting\(s\) app.inner.sise \(did you mean app.inner.size\?\); known in app.inner: rate, size"),
    ({"name": "x", "extra": 1}, r"unknown setting\(s\) app.extra"),
    ({"inner": {}}, r"missing setting\(s\) app.name"),
    ({"name": "x", "inner": {"size": "big"}}, r"app.inner.size='big': expected int"),
    ({"name": "x", "inner": {"size": True}}, r"app.inner.size=True: expected int"),
    ({"name": None}, r"app.name must not be null"),
])
def test_settings_errors_name_the_config_path(values, message):
    with pytest.raises(MelnasError, match=message):
        settings_from(values, Outer, prefix="app")


def test_a_missing_mandatory_value_names_the_key():
    with pytest.raises(MelnasError, match=r"name is required"):
        settings_from(OmegaConf.create({"name": "???"}), Outer)


def test_skipped_keys_are_left_to_the_caller():
    assert settings_from({"name": "x", "data": {"any": 1}, "inner": {"obj": {"_target_": "x"}}}, Outer,
                         skip=("data", "inner.obj")).name == "x"


@pytest.mark.parametrize("app, cls_path, skip", [
    ("search", "nas.search.loop:SearchSettings", ("data", "search_space", "controller", "reward")),
    ("train", "nas.train.job:TrainJob", ("data", "search_space")),
    ("cv", "nas.train.job:TrainJob", ("data", "search_space", "progress")),
    ("adapt", "nas.compress.adapt_job:AdaptJob", ()),
    ("eval", "experiments.evaluate:EvalSettings", ()),
    ("latency", "experiments.latency:LatencyCheckSettings", ("data", "search_space", "latency")),
    ("prepare", "experiments.prepare:PrepareApp", ("data",)),
    ("synth", "experiments.synth:SynthApp", ("synth",)),
    ("demo", "experiments.demo_steps:DemoApp", ("data",)),
    ("rank", "nas.search.rank.job:RankJob", ("data",)),
    ("study", "experiments.study_steps:StudyApp", ("data",)),
])
def test_every_app_config_fills_its_settings(app, cls_path, skip):
    """Every key of every app's composed config is a setting or a group passed on: none is ignored."""
    import importlib

    module, name = cls_path.split(":")
    cls = getattr(importlib.import_module(module), name)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=app, overrides=REQUIRED.get(app, []))
    settings_from(cfg, cls, skip=skip)


def test_hydra_run_dirs_are_shared_by_every_app():
    for app in ("search", "train", "cv", "adapt", "eval", "latency", "prepare", "synth", "demo", "rank", "study"):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name=app, overrides=REQUIRED.get(app, []), return_hydra_config=True)
        hydra = cfg.hydra
        assert OmegaConf.to_container(hydra.run, resolve=False)["dir"].startswith("outputs/${hydra.job.config_name}/")
        assert hydra.job.config_name == app
        assert hydra.sweep.dir.startswith(f"multirun/{app}/")


# ---- run_cli --------------------------------------------------------------------------


@pytest.mark.parametrize("error", [
    MelnasError("bad setting"), DataError("bad data"), CheckpointError("bad checkpoint"),
])
def test_user_errors_exit_2_with_one_line(error, capsys, monkeypatch):
    monkeypatch.delenv("MELNAS_DEBUG", raising=False)

    def fail():
        raise error

    with pytest.raises(SystemExit) as exit_info:
        run_cli("demo", fail)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"melnas-demo: {error}\n"


def test_a_value_error_from_outside_the_engine_says_where(capsys, monkeypatch):
    """A ValueError melnas's own checks did not raise (e.g. in a space of your own) gets its
    file and line; one of melnas's own checks speaks for itself."""
    from nas.evaluate.pareto import pareto_front

    monkeypatch.delenv("MELNAS_DEBUG", raising=False)

    def fail():
        max([])

    with pytest.raises(SystemExit) as exit_info:
        run_cli("search", fail)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("melnas-search: max() ") and f"(raised at {Path(__file__).resolve()}:" in err
    assert err.endswith("; MELNAS_DEBUG=1 prints the traceback)\n") and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        run_cli("compare", lambda: pareto_front([0.5], []))
    assert capsys.readouterr().err == "melnas-compare: need one latency per accuracy, got 1 and 0\n"


def test_a_missing_file_names_the_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("export", lambda: open(tmp_path / "nope.pt"))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"melnas-export: No such file or directory: {tmp_path / 'nope.pt'}\n"


def test_debug_flag_adds_the_traceback(capsys, monkeypatch):
    monkeypatch.setenv("MELNAS_DEBUG", "1")

    def fail():
        raise MelnasError("bad setting")

    with pytest.raises(SystemExit):
        run_cli("train", fail)
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.endswith("melnas-train: bad setting\n")


def test_a_bug_is_not_a_user_error():
    with pytest.raises(ZeroDivisionError):
        run_cli("train", lambda: 1 / 0)


def exit_status(main, argv: list[str]) -> int:
    """What ``main(argv)`` of a console command exits with (its return value, or ``sys.exit``'s code)."""
    try:
        return main(argv) or 0
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1


def test_run_cli_returns_the_result():
    assert run_cli("compare", lambda: 0) == 0


def test_an_interrupted_search_says_how_to_continue_once_it_has_a_checkpoint(tmp_path, capsys):
    from experiments.cli import HydraRun
    from experiments.search import resume_hint
    from nas.search.resume import CHECKPOINT

    def interrupted():
        raise KeyboardInterrupt

    run = HydraRun(tmp_path)
    for checkpointed in (False, True):
        if checkpointed:
            (tmp_path / CHECKPOINT).parent.mkdir(parents=True)
            (tmp_path / CHECKPOINT).write_bytes(b"")
        with pytest.raises(SystemExit) as exit_:
            run_cli("search", interrupted, after_interrupt=lambda: resume_hint(run))
        assert exit_.value.code == 130
        err = capsys.readouterr().err.strip()
        if checkpointed:
            assert err == (f"melnas-search: interrupted; continue from its last checkpoint with: "
                           f"melnas-search resume=true hydra.run.dir={tmp_path}")
        else:
            assert err == "melnas-search: interrupted"  # nothing to resume before the first epoch ends


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env}, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["experiments.adapt", "model=missing.pt", "target_ratio=0.5", "finetune.epochs=0"], "melnas-adapt: "),
    (["experiments.adapt", "model=m.pt"], "melnas-adapt: give exactly one of target_ms"),
    (["experiments.search", "trainer.epochs=0"], "melnas-search: invalid search trainer settings: trainer.epochs=0"),
    (["experiments.export", "missing.pt"], "melnas-export: "),
    (["experiments.search", "trainer.epoch=3"],
     "melnas-search: trainer.epoch is not a setting (did you mean trainer.epochs?); known in trainer: amp,"),
    (["experiments.train", "search_space=nowhere", "arch=x"],
     "melnas-train: search_space=nowhere: no search_space/nowhere.yaml; the options of search_space: enas_macro,"),
    (["experiments.rank", "rank.num_archs=[1"], "melnas-rank: cannot read the override 'rank.num_archs=[1'"),
    (["experiments.rank", "run=r", "data.cache_dir=c"],
     "melnas-rank: data is not a setting of this command: it comes from the search run (run=...)"),
    (["experiments.evaluate", "model=m.pt", "data.cache_dir=c"],
     "melnas-eval: data is not a setting of this command: the model.pt records the prepared cache"),
    (["experiments.search", "seed=1,2"], "melnas-search: Ambiguous value for argument 'seed=1,2'"),
])
def test_console_commands_print_one_line_and_exit_2(args, message, tmp_path):
    result = _run([*args, *(["hydra.run.dir=run"] if args[0] != "experiments.export" else [])], tmp_path,
                  MELNAS_DEBUG="0")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    debug = _run([*args, *(["hydra.run.dir=run"] if args[0] != "experiments.export" else [])], tmp_path,
                 MELNAS_DEBUG="1")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_a_space_given_another_spaces_keys_names_them():
    """A mobilenetv3 key given to enas_macro: a user error naming the key and the config file, not a Hydra trace."""
    from nas.errors import MelnasError
    from nas.io.registry import build_space, space_config

    config = {**space_config("enas_macro"), "width": 0.5}
    with pytest.raises(MelnasError, match=r"search_space: cannot build .*EnasMacroSpace.*'width'.*search_space/<name>\.yaml"):
        build_space(config)
