"""Evaluation: metrics on known predictions, and melnas-eval on a tiny trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from nas.evaluate.cost import count_params
from nas.data.dataset import make_loader, open_prepared
from nas.evaluate.metrics import (
    LatencySettings,
    check_compatible,
    classification_metrics,
    evaluate_checkpoint,
    format_summary,
    predict_probabilities,
    recording_accuracy,
)
from nas.io.model_file import load_model
from nas.io.config_dirs import BUILTIN_CONF_DIR
from tests.test_train_fixtures import tiny_cache, tiny_trained  # noqa: F401 (fixtures)

FAST_LATENCY = LatencySettings(warmup=1, repeats=3, cuda=False)  # CPU timing only, GPU or not


def test_metrics_on_known_predictions():
    # true 0 0 0 1 1 2 / predicted 0 0 1 1 2 2, worked out by hand:
    # class 0: P 2/2, R 2/3, F1 0.8; class 1: P 1/2, R 1/2, F1 0.5; class 2: P 1/2, R 1/1, F1 2/3
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["recall_macro"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert m["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["per_class"][0] == {"class": "a", "precision": 1.0, "recall": pytest.approx(2 / 3),
                                 "f1": pytest.approx(0.8), "support": 3}
    assert [row["support"] for row in m["per_class"]] == [3, 2, 1]


def test_metrics_with_an_unseen_class():
    # class "c" neither occurs nor is predicted: a zero row in the table, not in the macro average
    m = classification_metrics([0, 1, 1], [0, 1, 0], ["a", "b", "c"])
    assert m["per_class"][2] == {"class": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["recall_macro"] == pytest.approx((1 + 0.5) / 2)
    assert m["confusion_matrix"][2] == [0, 0, 0]


def test_metrics_reject_bad_labels():
    with pytest.raises(ValueError, match="equal-length"):
        classification_metrics([0, 1], [0], ["a", "b"])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        classification_metrics([0, 2], [0, 1], ["a", "b"])


def test_recording_accuracy_averages_windows_per_recording():
    labels = np.array([0, 0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6], [0.6, 0.4]])
    sources = np.array(["a.wav", "a.wav", "a.wav", "b.wav", "b.wav"])
    # a.wav: mean (0.467, 0.533) -> class 1, wrong; b.wav: mean (0.5, 0.5) -> tie -> class 0, wrong
    assert recording_accuracy(labels, probs, sources) == 0.0
    probs[1] = [0.9, 0.1]  # a.wav now right
    assert recording_accuracy(labels, probs, sources) == 0.5


def test_evaluate_checkpoint_writes_consistent_report(tiny_trained, tiny_cache, tmp_path):
    # Batch 32, as melnas-train scored the test split (train.eval_batch_size=32): the same
    # computation, so argmax ties cannot break differently than in the other batchings.
    metrics = evaluate_checkpoint(tiny_trained.model_path, out_dir=tmp_path, device="cpu", batch_size=32,
                                  latency=FAST_LATENCY)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["accuracy"] == metrics["accuracy"]
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    assert (tmp_path / "per_class.csv").read_text().startswith("class,precision,recall,f1,support")

    trained = load_model(tiny_trained.model_path)
    data = open_prepared(tiny_cache)
    y, probs = predict_probabilities(trained.model, make_loader(data, "test", batch_size=32, shuffle=False))
    expected = classification_metrics(y, probs.argmax(1), data.class_names)
    for key in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "confusion_matrix", "per_class"):
        assert metrics[key] == expected[key], key
    assert metrics["params"] == count_params(trained.model)
    assert metrics["latency_ms"] > 0 and "latency_ms_cuda" not in metrics  # cuda=False
    assert metrics["num_recordings"] == len(set(data.sources[data.rows("test")]))
    assert "per recording" in format_summary(metrics)
    # the same model scored twice gives the same numbers
    assert metrics["accuracy"] == tiny_trained.metrics["accuracy"]


def test_evaluate_on_another_split(tiny_trained, tmp_path):
    metrics = evaluate_checkpoint(tiny_trained.model_path, out_dir=tmp_path, split="val", device="cpu",
                                  latency=FAST_LATENCY)
    assert metrics["split"] == "val"


def test_model_and_cache_must_match(tiny_trained, tiny_cache):
    trained = load_model(tiny_trained.model_path)
    data = open_prepared(tiny_cache)
    trained.class_names = ["x", "y", "z"]
    with pytest.raises(ValueError, match="trained on"):
        check_compatible(trained, data)


def test_eval_config_composes():
    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=["model=some/model.pt"])
    assert cfg.cache_dir is None and cfg.split == "test"
    assert LatencySettings(**cfg.latency_measure).threads == 1
