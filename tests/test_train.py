"""melnas-train end to end on tiny generated audio through the real prepare pipeline and spaces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score

from nas.data.dataset import make_loader, open_prepared
from nas.evaluate.metrics import predict_probabilities
from nas.io.model_file import load_model, read_checkpoint, save_model
from nas.io.registry import build_space
from nas.data.errors import DataError
from nas.train.job import open_training_data, resolve_arch
from tests.test_train_fixtures import train_model
from tests.test_train_fixtures import compose_train, tiny_cache, tiny_trained  # noqa: F401 (fixtures)

METRIC_KEYS = {
    "accuracy", "f1_macro", "precision_macro", "recall_macro", "params", "macs", "latency_ms",
    "per_class", "confusion_matrix", "arch_string", "origin",
}


def test_train_writes_model_and_metrics(tiny_trained, tiny_cache):
    out = tiny_trained.out_dir
    for name in ("model.pt", "metrics.json", "per_class.csv", "confusion_matrix.png", "history.csv"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())

    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["origin"] == "preset:plain_sep3x3"
    assert metrics["retrained"] is True and metrics["split"] == "test"
    assert [row["class"] for row in metrics["per_class"]] == ["high", "low", "noise"]
    assert np.asarray(metrics["confusion_matrix"]).sum() == metrics["num_windows"]
    assert metrics["latency_ms"] > 0 and metrics["params"] > 0 and metrics["macs"] > 0
    assert 1 <= metrics["training"]["best_epoch"] <= metrics["training"]["epochs_run"] <= 2

    # The saved weights reproduce the reported test accuracy, scored in batches of 32 as
    # melnas-train did (train.eval_batch_size=32): other batchings may round differently.
    trained = load_model(out / "model.pt")
    data = open_prepared(tiny_cache)
    y, probs = predict_probabilities(trained.model, make_loader(data, "test", batch_size=32, shuffle=False))
    assert accuracy_score(y, probs.argmax(1)) == pytest.approx(metrics["accuracy"])


def test_model_pt_is_plain_and_complete(tiny_trained, tiny_cache):
    payload = torch.load(tiny_trained.model_path, map_location="cpu", weights_only=True)
    assert {"state_dict", "arch", "space_config", "num_classes", "class_names", "input_shape", "data_meta"} <= set(payload)
    assert payload["class_names"] == ["high", "low", "noise"] and payload["num_classes"] == 3
    assert payload["input_shape"] == [1, 32, 63]
    assert payload["space_config"]["_target_"] == "search_spaces.enas_macro.EnasMacroSpace"
    assert payload["space_config"]["filters"] == 8
    meta = payload["data_meta"]
    assert meta["n_mels"] == 32 and len(meta["mean"]) == 32 and len(meta["std"]) == 32
    assert Path(meta["cache_dir"]) == Path(tiny_cache).resolve()


def test_model_round_trip_gives_same_outputs(tiny_trained, tmp_path):
    first = load_model(tiny_trained.model_path)
    copy_path = save_model(
        tmp_path / "copy.pt", model=first.model, arch=first.arch, space_config=first.space_config,
        class_names=first.class_names, input_shape=first.input_shape, data_meta=first.data_meta, info=first.info,
    )
    second = load_model(copy_path)
    x = torch.randn(4, *first.input_shape)
    with torch.no_grad():
        assert torch.equal(first.model(x), second.model(x))
    assert second.arch == first.arch and second.info == first.info


def test_load_model_rejects_foreign_and_broken_files(tmp_path, tiny_trained):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a melnas model.pt"):
        read_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable"):
        read_checkpoint(tmp_path / "garbage.pt")
    with pytest.raises(FileNotFoundError, match="melnas-train"):
        read_checkpoint(tmp_path / "missing.pt")
    payload = torch.load(tiny_trained.model_path, weights_only=True)
    payload["state_dict"].popitem()
    torch.save(payload, tmp_path / "truncated.pt")
    with pytest.raises(ValueError, match="do not fit"):
        load_model(tmp_path / "truncated.pt")


def _write_search_arch(path: Path, *, filters: int, controller: str) -> dict:
    """An arch file shaped like a search's best_arch.json (arch + space_config + scores)."""
    space_config = {"_target_": "search_spaces.enas_macro.EnasMacroSpace", "num_layers": 3, "filters": filters,
                    "stem_stride": [2, 2]}
    arch = build_space(space_config).random_arch(np.random.default_rng(3))
    entry = {**arch.to_json_dict(), "space_config": space_config, "accuracy": 0.5, "latency_ms": 1.0,
             "reward": 0.4, "hash": arch.hash, "controller": controller}
    path.write_text(json.dumps(entry))
    return entry


def test_train_from_search_arch_file_uses_its_space_config(tiny_cache, tmp_path):
    entry = _write_search_arch(tmp_path / "best_arch.json", filters=6, controller="random")
    cfg = compose_train(tiny_cache, f"arch={tmp_path / 'best_arch.json'}", "train.epochs=1")
    result = train_model(cfg, tmp_path / "run")
    metrics = result.metrics
    assert metrics["origin"] == "random"
    assert metrics["arch_hash"] == entry["hash"]
    assert metrics["arch"]["choices"] == entry["choices"]
    # filters=6 from the file, not the search_space group's 8
    assert load_model(result.model_path).space_config["filters"] == 6


def test_an_arch_file_that_does_not_fit_its_space_is_named(tiny_cache, tmp_path):
    """Searched with another depth (or edited by hand): the error names the file."""
    path = tmp_path / "best_arch.json"
    entry = _write_search_arch(path, filters=6, controller="random")
    path.write_text(json.dumps({**entry, "space_config": {**entry["space_config"], "num_layers": 2}}))
    cfg = compose_train(tiny_cache, f"arch={path}", "train.epochs=1")
    with pytest.raises(ValueError, match=rf"{path}: arch does not fit space 'enas_macro'"):
        train_model(cfg, tmp_path / "run")


def test_space_overrides_apply_on_top(tiny_cache, tmp_path):
    _write_search_arch(tmp_path / "best_arch.json", filters=6, controller="enas_lstm")
    spec = resolve_arch(tmp_path / "best_arch.json", search_space={}, space_overrides={"filters": 12})
    assert spec.space_config["filters"] == 12 and spec.origin == "enas_lstm"


def test_a_search_run_dir_stands_for_its_best_arch(tmp_path):
    entry = _write_search_arch(tmp_path / "best_arch.json", filters=6, controller="evolution")
    spec = resolve_arch(str(tmp_path), search_space={})
    assert spec.arch_json["choices"] == entry["choices"] and spec.source == str(tmp_path / "best_arch.json")


def test_resolve_arch_errors_name_the_problem(tmp_path):
    space_cfg = {"_target_": "search_spaces.enas_macro.EnasMacroSpace", "num_layers": 3, "filters": 8}
    with pytest.raises(ValueError, match="plain_conv3x3"):
        resolve_arch("no_such_preset", search_space=space_cfg)
    with pytest.raises(ValueError, match="does not exist"):
        resolve_arch(str(tmp_path / "missing.json"), search_space=space_cfg)
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ValueError, match='"space" and "choices"'):
        resolve_arch(str(tmp_path / "empty.json"), search_space=space_cfg)


def test_missing_cache_is_a_clear_error(tmp_path):
    cfg = compose_train(tmp_path / "nothing_here")
    with pytest.raises(ValueError, match="melnas-prepare"):
        train_model(cfg, tmp_path / "run")


def test_a_missing_cache_names_the_one_the_arch_was_searched_on(tmp_path):
    run = tmp_path / "search_run"
    run.mkdir()
    _write_search_arch(run / "best_arch.json", filters=6, controller="enas_lstm")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("data:\n  cache_dir: data/cache/words\n")
    spec = resolve_arch(str(run), search_space={})
    with pytest.raises(DataError, match=r"no prepared data in .*; or, to train on the data .* was searched on, "
                                        r"pass data.cache_dir=data/cache/words$"):
        open_training_data(spec, tmp_path / "forgotten")  # e.g. the default cache, not prepared here
    with pytest.raises(DataError, match=r"melnas-prepare[^;]*$"):  # a preset: nothing to add
        open_training_data(resolve_arch("plain_conv3x3", search_space={
            "_target_": "search_spaces.enas_macro.EnasMacroSpace", "num_layers": 3, "filters": 8}),
            tmp_path / "forgotten")
