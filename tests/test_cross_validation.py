"""melnas-cv on an ESC-50-shaped fixture: 5 folds of a tiny network, mean +- std."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from experiments.cli import HydraRun
from experiments.cv import cv
from nas.data.errors import DataError
from nas.io.config_dirs import BUILTIN_CONF_DIR
from tests import format_fixtures as fx
from tests.test_train_fixtures import TINY_SPACE


def compose_cv(root, cache_dir, *overrides: str):
    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        return compose(config_name="cv", overrides=[
            "arch=plain_sep3x3", *TINY_SPACE, f"data.root={root}",
            f"data.cache_dir={cache_dir}", "data.num_workers=0", "data.n_mels=32",
            "train=quick", "train.epochs=1", "train.batch_size=8", "train.eval_batch_size=32",
            "latency_measure.warmup=1", "latency_measure.repeats=2", "device=cpu", "progress=false",
            *overrides])


def test_cv_trains_every_esc50_fold_and_reports_mean_and_std(tmp_path):
    base = fx.make_esc50(tmp_path)
    cfg = compose_cv(base, tmp_path / "cache", "data.format=esc50")
    result = cv(cfg, HydraRun(tmp_path / "cv"))
    assert result.folds == [1, 2, 3, 4, 5] and len(result.runs) == 5
    for fold, run in zip(result.folds, result.runs):
        metrics = json.loads(run.metrics_path.read_text())
        assert metrics["num_recordings"] == 9  # the 9 clips of that fold
        view = json.loads((tmp_path / "cv" / f"fold{fold}" / "data" / "meta.json").read_text())
        assert view["test_fold"] == fold
    accuracy = result.summary["accuracy"]
    assert accuracy["mean"] == pytest.approx(np.mean(accuracy["values"]))
    assert accuracy["std"] == pytest.approx(np.std(accuracy["values"], ddof=1))
    assert "accuracy" in result.table() and " +- " in result.table()
    saved = json.loads(result.summary_path.read_text())
    assert saved["folds"] == [1, 2, 3, 4, 5] and "f1_macro" in saved["metrics"]
    assert (tmp_path / "cv" / "cv_folds.csv").read_text().count("\n") == 6


def test_cv_refuses_data_without_folds_or_with_a_fixed_test_fold(tmp_path):
    base = fx.make_esc50(tmp_path)
    with pytest.raises(DataError, match="unset data.test_fold"):
        cv(compose_cv(base, tmp_path / "c", "data.format=esc50", "data.test_fold=1"),
           HydraRun(tmp_path / "cv"))
    gtzan = fx.make_gtzan(tmp_path / "g")
    with pytest.raises(DataError, match="data.format=gtzan has no folds"):
        cv(compose_cv(gtzan, tmp_path / "gc", "data.format=gtzan"), HydraRun(tmp_path / "cv"))
