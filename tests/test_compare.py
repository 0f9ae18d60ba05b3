"""melnas-compare on fabricated run directories; the Pareto front on hand-checked examples."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from experiments.compare import main as compare_main
from nas.evaluate.compare import PROXY, TEST, arch_hash, collect_rows, compare_runs
from nas.evaluate.pareto import pareto_front
from search_spaces.base import Arch
from tests.test_cli import exit_status


def test_pareto_front_hand_checked():
    # (accuracy, latency):  A .90/5  B .85/2  C .80/3 (dominated by B)  D .90/6 (dominated by A)
    #                       E .95/9  F .85/2 (equal to B: both stay)    G missing latency
    accuracy = [0.90, 0.85, 0.80, 0.90, 0.95, 0.85, 0.99]
    latency = [5.0, 2.0, 3.0, 6.0, 9.0, 2.0, None]
    assert pareto_front(accuracy, latency) == [True, True, False, False, True, True, False]
    assert pareto_front([], []) == []
    with pytest.raises(ValueError, match="one latency per accuracy"):
        pareto_front([0.5], [])


def test_pareto_front_calls_latencies_within_the_tolerance_equal():
    # A .74/0.087 ms; B .70/0.086 (1% faster: timing noise); C .68/0.080 (8% faster); D .74/0.0865
    accuracy, latency = [0.74, 0.70, 0.68, 0.74], [0.087, 0.086, 0.080, 0.0865]
    assert pareto_front(accuracy, latency) == [False, True, True, True]  # D dominates A by 0.5 us
    assert pareto_front(accuracy, latency, latency_tolerance=0.02) == [True, False, True, True]
    with pytest.raises(ValueError, match="latency_tolerance"):
        pareto_front(accuracy, latency, latency_tolerance=-0.1)


def test_arch_hash_matches_the_space_contract():
    arch = Arch("toy", ("a", "b"), (3, (0, 2)))
    assert arch_hash(json.loads(arch.to_json())) == arch.hash


def _arch(ops: str) -> dict:
    return {"space": "toy", "choices": {"l0": ops, "skip": [0]}}


def _search_dir(path: Path, controller: str, entries: list[tuple[str, float, float, float]]) -> None:
    """A search run: top_archs.json (arch, proxy accuracy, predicted latency, reward) + search_log.jsonl."""
    path.mkdir(parents=True)
    top = [{**_arch(ops), "space_config": {"_target_": "x.Toy"}, "accuracy": acc, "latency_ms": lat,
            "reward": reward, "hash": arch_hash(_arch(ops)), "arch_str": ops, "controller": controller}
           for ops, acc, lat, reward in entries]
    (path / "top_archs.json").write_text(json.dumps(top))
    (path / "best_arch.json").write_text(json.dumps(top[0]))
    with (path / "search_log.jsonl").open("w") as fh:
        for entry in top:
            fh.write(json.dumps({"arch": _arch(entry["arch_str"]), "arch_str": entry["arch_str"],
                                 "hash": entry["hash"], "accuracy": entry["accuracy"],
                                 "latency_ms": entry["latency_ms"], "reward": entry["reward"],
                                 "phase": "final", "epoch": 3, "controller": controller}) + "\n")


def _train_dir(path: Path, origin: str, ops: str, acc: float, lat: float, space_config: dict | None = None) -> None:
    path.mkdir(parents=True)
    metrics = {"accuracy": acc, "recording_accuracy": acc + 0.02, "f1_macro": acc - 0.01, "precision_macro": acc, "recall_macro": acc,
               "params": 1000, "macs": 20000, "latency_ms": lat, "arch": _arch(ops), "space_config": space_config,
               "arch_hash": arch_hash(_arch(ops)), "arch_string": ops, "origin": origin, "retrained": True,
               "per_class": [], "confusion_matrix": []}
    (path / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def demo_like(tmp_path: Path) -> Path:
    """Two searches, three retrained models, laid out like a melnas-demo output dir."""
    root = tmp_path / "demo"
    _search_dir(root / "search_enas", "enas_lstm", [("c3", 0.70, 2.0, 0.69), ("s5", 0.75, 4.0, 0.68),
                                                     ("mp", 0.60, 3.0, 0.55)])
    _search_dir(root / "search_random", "random", [("c5", 0.72, 5.0, 0.66), ("ap", 0.50, 1.0, 0.49)])
    _train_dir(root / "train_enas", "enas_lstm", "c3", 0.91, 1.5)
    _train_dir(root / "train_random", "random", "c5", 0.89, 2.5)  # slower and less accurate: dominated
    _train_dir(root / "train_mobilenetv3_small", "preset:mobilenetv3_small", "mbv3", 0.93, 4.0)
    (root / "train_enas" / "tensorboard").mkdir()  # ignored sub-folders
    return root


def test_rows_links_and_fronts(demo_like):
    rows = collect_rows([demo_like])
    tested = [r for r in rows if r.accuracy_kind == TEST]
    proxy = [r for r in rows if r.accuracy_kind == PROXY]
    assert len(tested) == 3 and len(proxy) == 5
    # retrained rows first, most accurate first
    assert [r.run for r in tested] == ["train_mobilenetv3_small", "train_enas", "train_random"]
    by_run = {r.run: r for r in tested}
    assert by_run["train_enas"].pareto and by_run["train_mobilenetv3_small"].pareto
    assert not by_run["train_random"].pareto
    # a retrained row carries its arch's search reward; the preset has none
    assert by_run["train_enas"].reward == 0.69 and by_run["train_random"].reward == 0.66
    assert by_run["train_mobilenetv3_small"].reward is None
    # search rows: origin from the controller, retrained flag, their own front
    proxy_by_arch = {r.arch_string: r for r in proxy}
    assert proxy_by_arch["c3"].origin == "enas_lstm" and proxy_by_arch["ap"].origin == "random"
    assert proxy_by_arch["c3"].retrained and proxy_by_arch["c5"].retrained and not proxy_by_arch["s5"].retrained
    # proxy front by hand: ap .50/1, c3 .70/2, s5 .75/4 on it; mp .60/3 (c3 dominates), c5 .72/5 (s5 dominates) off
    assert {a for a, r in proxy_by_arch.items() if r.pareto} == {"ap", "c3", "s5"}


def test_one_arch_at_two_widths_is_told_apart_by_its_settings(tmp_path):
    """Same arch, same hash, other networks: the origin names the setting they differ in;
    rows of other archs, whose settings differ in ways that do not make them the same
    network (the search's kernel list), are left alone."""
    toy = {"_target_": "x.Toy", "kernels": [3, 5, 7]}
    _train_dir(tmp_path / "half", "preset:toy", "mbv3", 0.80, 2.0, {**toy, "width": 0.5})
    _train_dir(tmp_path / "quarter", "preset:toy", "mbv3", 0.70, 1.0, {**toy, "width": 0.25})
    _train_dir(tmp_path / "winner", "enas_lstm", "c3", 0.75, 1.5, {**toy, "width": 0.5, "kernels": [3, 5]})
    origins = {r.run: r.origin for r in collect_rows([tmp_path])}
    assert origins == {"half": "preset:toy (width=0.5)", "quarter": "preset:toy (width=0.25)", "winner": "enas_lstm"}


def test_sweep_members_are_labelled_with_the_overrides_their_sweep_varied(tmp_path):
    sweep = tmp_path / "multirun" / "search"
    for member, target in (("0", "0.08"), ("1", "0.1")):
        _search_dir(sweep / member, "enas_lstm", [("c3", 0.70, 2.0, 0.69)])
        (sweep / member / ".hydra").mkdir()
        (sweep / member / ".hydra" / "overrides.yaml").write_text(
            f"- experiment=quick\n- reward.target_ms={target}\n")
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    _train_dir(tmp_path / "train", "enas_lstm", "c3", 0.91, 1.5)  # not a sweep member: its label stays
    runs = {r.run for r in collect_rows([tmp_path])}
    assert runs == {"multirun/search/0 (reward.target_ms=0.08)", "multirun/search/1 (reward.target_ms=0.1)", "train"}


def test_compare_writes_table_csv_and_plot(demo_like, tmp_path, capsys):
    out = tmp_path / "compare"
    code = compare_main([str(demo_like / "search_enas"), str(demo_like / "search_random"),
                         str(demo_like / "train_enas"), str(demo_like / "train_random"),
                         str(demo_like / "train_mobilenetv3_small"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.splitlines()[0].startswith("| run | origin | acc. kind | precision | accuracy")
    assert f"Pareto plot: {out / 'pareto.png'}" in printed
    assert (out / "pareto.png").stat().st_size > 5000
    assert (out / "compare.md").read_text().strip() in printed
    with (out / "compare.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 8
    enas = next(r for r in table if r["run"] == "train_enas")
    assert enas["pareto"] == "True" and enas["accuracy_kind"] == TEST and enas["origin"] == "enas_lstm"
    assert float(enas["recording_accuracy"]) == pytest.approx(0.93)
    assert "| train_enas | enas_lstm | test | fp32 | 0.9100 | 0.9300 |" in printed


def test_search_without_top_archs_uses_its_log(tmp_path):
    run = tmp_path / "interrupted"
    _search_dir(run, "evolution", [("c3", 0.7, 2.0, 0.6)])
    (run / "top_archs.json").unlink()
    with (run / "search_log.jsonl").open("a") as fh:  # the same arch scored again, better
        fh.write(json.dumps({"arch": _arch("c3"), "arch_str": "c3", "accuracy": 0.8, "latency_ms": 2.0,
                             "reward": 0.7, "phase": "controller", "controller": "evolution"}) + "\n")
    rows = compare_runs([run], tmp_path / "out").rows
    assert len(rows) == 1 and rows[0].reward == 0.7 and rows[0].origin == "evolution"


def test_compare_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert exit_status(compare_main, [str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "holds no run outputs" in capsys.readouterr().err


def test_a_failed_run_s_empty_folder_is_skipped_with_a_warning(tmp_path, caplog):
    run = tmp_path / "search"
    _search_dir(run, "enas_lstm", [("c1", 0.7, 2.0, 0.6)])
    failed = tmp_path / "failed_run"
    (failed / ".hydra").mkdir(parents=True)
    with caplog.at_level("WARNING"):
        rows = compare_runs([run, failed], tmp_path / "out").rows
    assert len(rows) == 1 and rows[0].origin == "enas_lstm"
    assert f"skipped {failed}: holds no run outputs" in caplog.text
    with pytest.raises(ValueError, match="not a directory"):
        collect_rows([tmp_path / "missing"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="lacks"):
        collect_rows([bad])


def _saved_model(path: Path, filters: int) -> Path:
    from nas.io.model_file import save_model
    from nas.io.registry import build_space

    config = {"_target_": "search_spaces.enas_macro.EnasMacroSpace", "num_layers": 2, "filters": filters}
    space = build_space(config)
    arch = space.parse_arch_string("c3|c3<0")
    model = space.build(arch, num_classes=2, input_shape=(1, 8, 8))
    return save_model(path / "model.pt", model=model, arch=arch, space_config=config, class_names=["a", "b"],
                      input_shape=(1, 8, 8), data_meta={})


def test_remeasure_times_the_models_side_by_side(tmp_path, monkeypatch):
    """The runs' own latencies (99 and 1 ms, taken under different loads) are replaced by
    one side-by-side timing, which ranks the bigger model slower."""
    from nas.latency.runtimes import Runtime

    calls: list[int] = []

    class ParamRuntime(Runtime):  # each model is prepared once; its run "takes" params / 1000 ms
        def prepare(self, model, inputs, *, threads):
            run = lambda: None  # noqa: E731
            run.params = sum(p.numel() for p in model.parameters())
            return run

    spans: list[float] = []

    def param_ms(runs, *, min_span_ms, **_):  # one round: every model timed together
        spans.append(min_span_ms)
        calls.extend(run.params for run in runs)
        return [run.params / 1000.0 for run in runs]

    monkeypatch.setattr("nas.latency.measure.LatencySettings.cpu_runtime", lambda self: ParamRuntime())
    monkeypatch.setattr("nas.latency.side_by_side.time_interleaved", param_ms)
    small, big = tmp_path / "train_small", tmp_path / "train_big"
    for path, filters, lat in ((small, 8, 99.0), (big, 32, 1.0)):
        _train_dir(path, "preset:plain", f"f{filters}", 0.8, lat)
        _saved_model(path, filters)
    rows = {r.run: r for r in collect_rows([tmp_path], remeasure_rounds=3)}
    assert len(calls) == 6 and calls[:2] == calls[2:4] == calls[4:]  # 3 rounds of both models, together
    assert spans == [2000.0] * 3  # each round spread over 2 s of wall time
    assert rows["train_small"].latency_ms == pytest.approx(min(calls) / 1000.0)
    assert rows["train_big"].latency_ms == pytest.approx(max(calls) / 1000.0)
    assert [r.pareto for r in (rows["train_small"], rows["train_big"])] == [True, False]  # same accuracy
    assert {r.latency_runtime for r in rows.values()} == {ParamRuntime().name}  # what they were re-timed in
    assert "side by side (median of 2 rounds)" in compare_runs([tmp_path], tmp_path / "out", remeasure_rounds=2).markdown


def test_remeasure_needs_the_models(demo_like):
    with pytest.raises(ValueError, match="names no model"):
        collect_rows([demo_like], remeasure_rounds=1)


def test_a_table_of_latencies_from_different_runtimes_says_so():
    from nas.evaluate.compare import Row, markdown_table

    rows = [Row(run=name, origin="random", accuracy_kind=TEST, arch_hash=name, arch_string="", accuracy=0.8,
                latency_ms=1.0, latency_runtime=runtime)
            for name, runtime in (("a", "onnxruntime"), ("b", "torch (before latency runtimes)"))]
    assert "different runtimes (onnxruntime, torch (before latency runtimes))" in markdown_table(rows)
    rows[1].latency_runtime = "onnxruntime"
    assert "different runtimes" not in markdown_table(rows)


def test_runs_on_different_data_draw_a_warning(tmp_path, caplog):
    search = tmp_path / "search"
    _search_dir(search, "enas_lstm", [("c1", 0.7, 2.0, 0.6)])
    (search / ".hydra").mkdir()
    (search / ".hydra" / "config.yaml").write_text(f"data:\n  cache_dir: {tmp_path / 'words'}\n")
    same, other = tmp_path / "train_same", tmp_path / "train_other"
    for run, cache_dir in ((same, "words"), (other, "birds")):
        _train_dir(run, "enas_lstm", "c1", 0.8, 2.0)
        metrics = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**metrics, "cache_dir": str(tmp_path / cache_dir)}))
    with caplog.at_level("WARNING"):
        compare_runs([search, same], tmp_path / "out_same")
    assert "different data caches" not in caplog.text
    with caplog.at_level("WARNING"):
        compare_runs([search, same, other], tmp_path / "out_mixed")
    assert "these runs used 2 different data caches" in caplog.text
    assert f"{tmp_path / 'birds'}: 1 run(s), e.g. {other}" in caplog.text


def test_each_data_set_gets_its_own_pareto_front(tmp_path):
    """A fast, weak model on one data set does not push a slower one on other data off the front."""
    for run, cache_dir, acc, lat in (("words_fast", "words", 0.9, 1.0), ("words_slow", "words", 0.8, 2.0),
                                     ("birds", "birds", 0.6, 3.0)):
        _train_dir(tmp_path / run, "enas_lstm", run, acc, lat)
        metrics = json.loads((tmp_path / run / "metrics.json").read_text())
        (tmp_path / run / "metrics.json").write_text(json.dumps({**metrics, "cache_dir": str(tmp_path / cache_dir)}))
    fronts = {r.run: r.pareto for r in collect_rows([tmp_path])}
    assert fronts == {"words_fast": True, "words_slow": False, "birds": True}
