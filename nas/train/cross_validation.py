"""Cross-validation over a data set's folds (ESC-50: 5, UrbanSound8K: 10, FSDD by
speaker: one per speaker): train the same arch once per test fold with
``nas.train.job.train_model`` and report the mean and standard deviation of each test
metric over the folds, as the ESC-50 and UrbanSound8K papers do.

The features are prepared once (``data.*``, the usual cache); each fold trains on a
fold view of that cache (``nas.data.folds``): the same features, that fold as test, val
drawn from the other folds by group (``data.splits``' train:val ratio, ``data.seed``),
normalisation statistics from that fold's train split. Nothing is featurised twice.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from nas.data.errors import DataError
from nas.data.folds import cache_folds, fold_view
from nas.data.prepare import prepare_for_run
from nas.train.job import OptimizerFactory, TrainJob, TrainResult, train_model

log = logging.getLogger(__name__)

# The test metrics summarised over folds (metrics.json keys).
METRICS = ("accuracy", "recording_accuracy", "f1_macro", "precision_macro", "recall_macro")


@dataclass
class CrossValidationResult:
    out_dir: Path
    folds: list[int]
    runs: list[TrainResult]
    summary: dict[str, dict[str, Any]]  # metric -> {"mean", "std", "values"}
    summary_path: Path

    def table(self) -> str:
        """One line per metric: mean +- std and the value on each fold."""
        lines = [f"{len(self.folds)}-fold cross-validation (test folds {self.folds}; std "
                 "over folds, ddof=1)",
                 f"{'metric':<20}{'mean +- std':>18}  per fold"]
        for name, row in self.summary.items():
            values = " ".join(f"{value:.4f}" for value in row["values"])
            lines.append(f"{name:<20}{row['mean']:>9.4f} +- {row['std']:.4f}  {values}")
        return "\n".join(lines)


def cross_validate(
    job: TrainJob,
    *,
    data: Mapping[str, Any],
    out_dir: str | Path,
    search_space: Mapping[str, Any],
    optimizer_factory: OptimizerFactory,
    progress: bool = True,
) -> CrossValidationResult:
    """Prepare ``data`` (the ``data`` config group as plain values) once, then train
    ``job.arch`` with ``job.train`` with each fold as test (in ``out_dir/fold<K>/``); write
    ``cv_metrics.json`` and ``cv_folds.csv`` into ``out_dir``."""
    out_dir = Path(out_dir)
    if data.get("test_fold") is not None or data.get("val_fold") is not None:
        raise DataError("cross-validation takes every fold as test in turn and draws val "
                        "from the other folds: unset data.test_fold and data.val_fold")
    prepare_for_run(data, progress=progress)
    cache_dir = Path(data["cache_dir"]).expanduser()
    folds = cache_folds(cache_dir)
    if not folds:
        raise DataError(f"data.format={_format_name(data)} has no folds in {cache_dir}: "
                        "cross-validation needs folds (esc50, urbansound8k, fsdd with "
                        "data.format.split=speaker, or a manifest with a fold column)")
    runs = []
    for fold in folds:
        fold_dir = out_dir / f"fold{fold}"
        view = fold_view(cache_dir, fold_dir / "data", test_fold=fold)
        log.info("cross-validation: fold %d of %s as test", fold, folds)
        runs.append(train_model(job, out_dir=fold_dir, cache_dir=view, search_space=search_space,
                                optimizer_factory=optimizer_factory))
    summary = {}
    for name in METRICS:
        values = [float(run.metrics[name]) for run in runs]
        summary[name] = {"mean": float(np.mean(values)),
                         "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                         "values": values}
    summary_path = out_dir / "cv_metrics.json"
    summary_path.write_text(json.dumps({
        "folds": folds, "metrics": summary, "arch": str(job.arch),
        "cache_dir": str(cache_dir.resolve()),
        "fold_dirs": [str(run.out_dir) for run in runs],
        "params": runs[0].metrics.get("params"), "macs": runs[0].metrics.get("macs"),
    }, indent=2), encoding="utf-8")
    with (out_dir / "cv_folds.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("fold", *METRICS, "out_dir"))
        for fold, run in zip(folds, runs):
            writer.writerow((fold, *(run.metrics[name] for name in METRICS), run.out_dir))
    return CrossValidationResult(out_dir, folds, runs, summary, summary_path)


def _format_name(data: Mapping[str, Any]) -> str:
    value = data.get("format")
    return str(value.get("name")) if hasattr(value, "get") else str(value or "folders")
