"""melnas-study: its statistics, its resume, its report files (fast) and the command end to end (slow)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from experiments import study_steps
from experiments.study_steps import StudyApp, default_jobs, plan_study, run_study
from experiments.settings import settings_from
from nas.evaluate.study_stats import (
    Bootstrap,
    StudyRow,
    bootstrap_interval,
    latency_matched,
    method_spreads,
    paired_differences,
    score_against_test,
    seeds_for_difference,
    seeds_needed,
    spread,
    summary_table,
)
from nas.io.config_dirs import BUILTIN_CONF_DIR
from tests.test_demo import TINY_SEARCH, _hydra_list
from tests.test_train_fixtures import write_tone_dataset


def _row(method: str, seed: int, accuracy: float, train_seed: int | None = None, latency: float = 1.0) -> StudyRow:
    return StudyRow(method, seed, seed if train_seed is None else train_seed, accuracy, accuracy, accuracy - 0.1,
                    latency)


# ---- statistics -----------------------------------------------------------------------


def test_spread_is_mean_and_sample_std():
    s = spread([0.6, 0.7, 0.8])
    assert s.mean == pytest.approx(0.7) and s.std == pytest.approx(0.1) and s.n == 3
    assert spread([0.5]).std == 0.0
    with pytest.raises(ValueError):
        spread([])


def test_a_constant_paired_difference_has_a_zero_width_interval():
    rows = [_row("random", s, 0.6 + 0.05 * s) for s in range(4)] + [_row("enas", s, 0.62 + 0.05 * s) for s in range(4)]
    (diff,) = paired_differences(rows, "accuracy", "random")
    assert diff.method == "enas" and diff.n == 4
    assert diff.mean == pytest.approx(0.02) and diff.low == pytest.approx(0.02) and diff.high == pytest.approx(0.02)
    # unpaired, the methods' spreads overlap: pairing is what makes the difference visible
    spreads = method_spreads(rows, "accuracy")
    assert spreads["enas"].mean - spreads["random"].mean < spreads["random"].std


def test_bootstrap_interval_is_the_percentile_interval_of_resampled_means():
    values = [0.01, -0.02, 0.04, 0.03, 0.00]
    boot = Bootstrap(resamples=2000, confidence=0.9, seed=3)
    low, high = bootstrap_interval(values, boot)
    rng = np.random.default_rng(3)
    means = np.asarray(values)[rng.integers(0, 5, size=(2000, 5))].mean(axis=1)
    assert (low, high) == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])))
    assert low < np.mean(values) < high
    assert bootstrap_interval(values, boot) == (low, high)  # seeded: the same interval every time
    wider = bootstrap_interval(values, Bootstrap(resamples=2000, confidence=0.99, seed=3))
    assert wider[0] <= low and wider[1] >= high


def test_a_known_mean_difference_is_covered_by_its_interval():
    rng = np.random.default_rng(0)
    diffs = 0.03 + rng.normal(0, 0.01, size=30)
    low, high = bootstrap_interval(diffs)
    assert low < 0.03 < high and high - low < 0.02


def test_bootstrap_settings_are_checked():
    with pytest.raises(ValueError, match="resamples"):
        Bootstrap(resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        Bootstrap(confidence=1.0)


def test_training_seeds_are_averaged_before_the_seeds_are_compared():
    rows = [_row("random", 0, 0.5, 0), _row("random", 0, 0.7, 1), _row("random", 1, 0.6, 0), _row("random", 1, 0.6, 1),
            _row("enas", 0, 0.65, 0), _row("enas", 1, 0.7, 0)]
    (diff,) = paired_differences(rows, "accuracy", "random")
    assert diff.per_seed == pytest.approx({0: 0.05, 1: 0.1})
    table = {e["method"]: e for e in summary_table(rows)}
    assert table["random"]["seeds"] == 2 and table["random"]["models"] == 4
    assert table["random"]["accuracy_mean"] == pytest.approx(0.6) and table["random"]["accuracy_std"] == pytest.approx(0.0)
    assert table["enas"]["accuracy_std"] == pytest.approx(np.std([0.65, 0.7], ddof=1))


def test_latency_matched_accuracy_separates_a_better_trade_off_from_another_point_of_it():
    # random's winners lie on accuracy = 0.8 + 1.0 x latency; enas is 0.02 above it and "slow"
    # 0.02 below it at the same latencies (so the fitted line stays that one); "fast" sits on
    # the line at lower latencies (a plain difference reads -0.05).
    lats = {0: 0.10, 1: 0.12, 2: 0.14}
    rows = [_row("random", s, 0.8 + lat, latency=lat) for s, lat in lats.items()]
    rows += [_row("enas", s, 0.82 + lat, latency=lat) for s, lat in lats.items()]
    rows += [_row("slow", s, 0.78 + lat, latency=lat) for s, lat in lats.items()]
    rows += [_row("fast", s, 0.8 + lat - 0.05, latency=lat - 0.05) for s, lat in lats.items()]
    rows += [_row("preset:mnv3", s, 0.5, latency=0.2) for s in lats]  # far off the line, not fitted
    matched = latency_matched(rows, "random")
    assert matched.line.slope_per_ms == pytest.approx(1.0) and matched.line.n == 12
    by_method = {d.method: d for d in matched.differences}
    assert by_method["enas"].mean == pytest.approx(0.02) and by_method["slow"].mean == pytest.approx(-0.02)
    assert by_method["fast"].mean == pytest.approx(0.0, abs=1e-9)
    (plain_fast,) = [d for d in paired_differences(rows, "accuracy", "random") if d.method == "fast"]
    assert plain_fast.mean == pytest.approx(-0.05)
    assert matched.spreads["preset:mnv3"].mean == pytest.approx(0.5 - matched.line.expected(0.2))
    assert latency_matched([_row("random", s, 0.8) for s in range(3)], "random") is None  # one latency: no line


def test_seeds_for_a_difference_is_the_paired_t_tests_sample_size():
    # textbook: a difference of half a std (Cohen's d = 0.5), two-sided 5%, power 0.8 -> 34 pairs
    assert seeds_for_difference(0.02, 0.01) == 34
    assert seeds_for_difference(0.02, -0.01) == 34  # the sign does not matter
    assert seeds_for_difference(0.01, 0.01) == 10  # d = 1
    # the smallest n that meets the condition: n - 1 does not
    from scipy import stats
    def half_width(n: int) -> float:
        return (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * 0.02 / np.sqrt(n)
    assert half_width(34) <= 0.01 < half_width(33)
    # more noise, a smaller difference or a higher confidence all take more seeds
    assert seeds_for_difference(0.03, 0.01) > 34 and seeds_for_difference(0.02, 0.005) > 34
    assert seeds_for_difference(0.02, 0.01, confidence=0.99) > 34
    assert seeds_for_difference(0.02, 0.0) is None and seeds_for_difference(0.0, 0.01) == 2


def test_seeds_needed_reads_the_std_of_the_per_seed_differences():
    rows = ([_row("random", s, 0.70) for s in range(3)]
            + [_row("enas", s, 0.70 + d) for s, d in enumerate([0.01, 0.03, -0.01])])
    (diff,) = paired_differences(rows, "accuracy", "random")
    needed = seeds_needed(diff, effect=0.005)
    assert needed.per_seed_std == pytest.approx(0.02)  # std of +0.01, +0.03, -0.01
    assert needed.at_observed == seeds_for_difference(0.02, 0.01) and needed.effect == 0.005
    assert needed.at_effect == seeds_for_difference(0.02, 0.005)
    one_seed = paired_differences(rows[:1] + rows[3:4], "accuracy", "random")[0]
    assert seeds_needed(one_seed, effect=0.01) is None  # no std from one seed


def test_supernet_scores_are_set_against_test_accuracy_on_the_seeds_scored():
    """A controller whose winners score higher on the supernet the less they retrain well:
    both differences are paired on the seeds with a score and a retraining of both methods,
    and their correlation is -1 (the baseline moves from seed to seed, so raw values would
    not correlate)."""
    baseline_test = {0: 0.70, 1: 0.60, 2: 0.75, 3: 0.65, 4: 0.72}
    rows = [_row("random", s, a) for s, a in baseline_test.items()]
    rows += [_row("enas", s, baseline_test[s] + d) for s, d in {0: -0.02, 1: -0.01, 2: 0.0, 3: -0.03}.items()]
    rows.append(_row("enas", 5, 0.9))
    scores = {"random": {0: 0.50, 1: 0.40, 2: 0.55, 3: 0.45, 4: 0.5},
              "enas": {0: 0.54, 1: 0.42, 2: 0.55, 3: 0.51, 4: 0.9, 5: 0.5}}  # 4: no enas model, 5: no random one
    (result,) = score_against_test(scores, rows, "random")
    assert result.score.method == "enas" and result.score.per_seed == pytest.approx({0: 0.04, 1: 0.02, 2: 0.0, 3: 0.06})
    assert result.test.per_seed == pytest.approx({0: -0.02, 1: -0.01, 2: 0.0, 3: -0.03})
    assert result.score.mean == pytest.approx(0.03) and result.correlation == pytest.approx(-1.0)
    assert result.correlation_low == pytest.approx(-1.0) and result.correlation_high == pytest.approx(-1.0)
    three = {m: {s: v for s, v in by_seed.items() if s < 3} for m, by_seed in scores.items()}
    (few,) = score_against_test(three, rows, "random")
    assert few.correlation == pytest.approx(-1.0) and np.isnan(few.correlation_low)  # no interval from 3 seeds
    two = {m: {s: v for s, v in by_seed.items() if s < 2} for m, by_seed in scores.items()}
    assert np.isnan(score_against_test(two, rows, "random")[0].correlation)  # too few seeds for an r
    assert score_against_test({"enas": scores["enas"]}, rows, "random") == []  # the baseline unscored


def test_the_fisher_interval_of_a_correlation():
    from nas.evaluate.study_stats import fisher_interval

    low, high = fisher_interval(-0.61, 10, 0.95)  # atanh(-0.61) -+ 1.96 / sqrt(7)
    assert (low, high) == pytest.approx((np.tanh(np.arctanh(-0.61) - 1.959964 / 7 ** 0.5),
                                         np.tanh(np.arctanh(-0.61) + 1.959964 / 7 ** 0.5)), abs=1e-6)
    assert low < -0.61 < high < 0.1
    assert all(np.isnan(fisher_interval(0.5, 3, 0.95))) and all(np.isnan(fisher_interval(float("nan"), 10, 0.95)))


def test_a_missing_baseline_is_named():
    with pytest.raises(ValueError, match="baseline 'random'"):
        paired_differences([_row("enas", 0, 0.5)], "accuracy", "random")


def test_latencies_of_different_runtimes_are_not_averaged(tmp_path):
    from nas.evaluate.study_report import write_study_report

    rows = [replace(_row(m, s, 0.7), latency_runtime="onnxruntime fp32", run_dir=f"{m}{s}")
            for m in ("enas", "random") for s in (0, 1)]
    rows[1] = replace(rows[1], latency_runtime="torch (before latency runtimes)")
    with pytest.raises(ValueError, match=r"different runtimes.*onnxruntime fp32: e.g. enas0.*torch .*: e.g. enas1"):
        write_study_report(rows, tmp_path, baseline="random")


# ---- orchestration: plan, resume, report ----------------------------------------------


def _study_cfg(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        return compose(config_name="study", overrides=[f"data.root={tmp_path}/audio",
                                                       f"data.cache_dir={tmp_path}/cache", *overrides])


def test_study_defaults_and_plan(tmp_path):
    cfg = _study_cfg(tmp_path)
    study = settings_from(cfg, StudyApp, skip=("data",)).study
    assert study.seeds == [0, 1, 2] and study.controllers == ["enas_lstm", "random", "evolution"]
    assert study.baseline == "random" and study.presets == ["mobilenetv3_small"] and study.resolve_effect == 0.01
    with pytest.raises(ValueError, match="study.resolve_effect"):
        settings_from(_study_cfg(tmp_path, "study.resolve_effect=0"), StudyApp, skip=("data",))
    planned = plan_study(_study_cfg(tmp_path, "study.seeds=[3]", "study.train_seeds=[0,1]"), tmp_path / "out")
    names = [step.name for _, _, step in planned]
    assert names[:3] == ["search_enas_lstm", "search_random", "search_evolution"]
    assert "train_random_t1" in names and "train_mobilenetv3_small_t0" in names and len(names) == 3 + 4 * 2
    search = next(step for _, _, step in planned if step.name == "search_random")
    assert search.cfg.seed == 3 and search.cfg.data.root == f"{tmp_path}/audio"  # the seed round's seed, the study's data
    train = next(step for _, _, step in planned if step.name == "train_random_t1")
    assert train.cfg.seed == 1 and train.cfg.arch == str(tmp_path / "out" / "seed_3" / "search_random" / "best_arch.json")
    assert {d.name for d, _, _ in planned} == {"seed_3"}


def test_jobs_default_to_sequential_on_two_cores():
    assert default_jobs(2) == 1 and default_jobs(16) == 4


def _fake_outputs(step, round_dir: Path, seed: int) -> None:
    run_dir = round_dir / step.name
    run_dir.mkdir(parents=True, exist_ok=True)
    if step.kind == "search":  # the winner's supernet score: enas_lstm 0.04 above random search's
        score = 0.5 + 0.01 * seed + {"enas_lstm": 0.04, "evolution": 0.02}.get(step.name.removeprefix("search_"), 0.0)
        (run_dir / "best_arch.json").write_text(json.dumps({"accuracy": score}))
        return
    bonus = {"enas_lstm": 0.03, "random": 0.0, "evolution": 0.01}.get(step.name.split("_t")[0].removeprefix("train_"), -0.02)
    accuracy = 0.6 + 0.05 * seed + bonus
    (run_dir / "metrics.json").write_text(json.dumps({"accuracy": accuracy, "recording_accuracy": accuracy + 0.05,
                                                      "f1_macro": accuracy - 0.02, "latency_ms": 1.0 + seed}))


@pytest.fixture
def no_data(monkeypatch):
    """The study's data steps as no-ops (these tests fake the runs' outputs)."""
    class Report:
        def summary(self) -> str:
            return "prepared"

    monkeypatch.setattr(study_steps, "synthesise_if_missing", lambda cfg: None)
    monkeypatch.setattr(study_steps, "prepare_dataset", lambda *a, **k: Report())


def test_resume_skips_finished_steps_and_writes_the_report(tmp_path, monkeypatch, no_data):
    cfg = _study_cfg(tmp_path, "study.seeds=[0,1,2]", "study.controllers=[enas_lstm,random,evolution]",
                     "study.remeasure_rounds=0")  # fake runs: no models to time
    out = tmp_path / "out"
    planned = plan_study(cfg, out)
    unfinished = {("seed_1", "train_enas_lstm_t1"), ("seed_2", "search_evolution"), ("seed_2", "train_evolution_t2")}
    for round_dir, seed, step in planned:
        if (round_dir.name, step.name) not in unfinished:
            _fake_outputs(step, round_dir, seed)
    ran: list[tuple[str, str]] = []

    def fake_run(step, round_dir, *, threads=None):
        ran.append((round_dir.name, step.name))
        _fake_outputs(step, round_dir, int(round_dir.name.removeprefix("seed_")))

    monkeypatch.setattr(study_steps, "run_step", fake_run)
    result = run_study(cfg, out)
    assert set(ran) == unfinished and ran.index(("seed_2", "search_evolution")) < ran.index(("seed_2", "train_evolution_t2"))
    assert sorted(result.ran) == sorted(f"{d}/{n}" for d, n in unfinished)

    ran.clear()
    again = run_study(cfg, out)  # everything done: nothing runs, the same report
    assert ran == [] and again.ran == []

    for name in ("study.md", "study.csv", "study_summary.json", "study.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    with open(out / "study.csv") as f:
        table = {row["method"]: row for row in csv.DictReader(f)}
    assert set(table) == {"enas_lstm", "random", "evolution", "preset:mobilenetv3_small"}
    assert float(table["enas_lstm"]["accuracy_mean"]) == pytest.approx(0.68)
    assert float(table["enas_lstm"]["accuracy_diff_vs_random"]) == pytest.approx(0.03)
    assert float(table["enas_lstm"]["accuracy_diff_vs_random_low"]) == pytest.approx(0.03)
    assert table["random"]["accuracy_diff_vs_random"] == ""
    summary = json.loads((out / "study_summary.json").read_text())
    assert summary["bootstrap"] == {"resamples": 10000, "confidence": 0.95, "seed": 0, "method": "percentile",
                                    "description": Bootstrap().describe()}
    assert len(summary["runs"]) == 3 * 4 and summary["budget"]["seeds"] == [0, 1, 2]
    markdown = (out / "study.md").read_text()
    assert "| enas_lstm | 3 | 0.6800 +- 0.0500 |" in markdown
    assert "| enas_lstm | 3 | +0.0300 [+0.0300, +0.0300]" in markdown
    assert "percentile bootstrap" in markdown and "test acc (recording)" in markdown
    assert "the same trainings in every" not in markdown  # each round retrained its own preset
    # a constant +0.03 per seed: 2 seeds resolve it; the sample sizes are in the JSON too
    assert "| enas_lstm | test acc (window) | 0.0000 | 2 (+0.0300) | 2 |" in markdown
    needed = {(n["method"], n["metric"]): n for n in summary["seeds_needed"]}
    assert needed[("enas_lstm", "accuracy")]["at_observed"] == 2 and needed[("enas_lstm", "accuracy")]["power"] == 0.8
    # the winners' supernet scores against their test accuracy (constant differences: no r)
    assert "| enas_lstm | 3 | +0.0400 [+0.0400, +0.0400] | +0.0300 [+0.0300, +0.0300] | - |" in markdown
    against = {a["method"]: a for a in summary["supernet_score_against_test"]}
    assert set(against) == {"enas_lstm", "evolution"} and against["evolution"]["score"]["mean"] == pytest.approx(0.02)
    assert against["enas_lstm"]["test"]["per_seed"] == pytest.approx({"0": 0.03, "1": 0.03, "2": 0.03})
    assert against["enas_lstm"]["correlation"] is None


def test_winners_are_scored_against_each_other_only_on_one_supernet(tmp_path, no_data):
    """Followers load the first search's supernet and the sandwich rule trains the same one
    for every controller; under trainer.sampling=controller each search trains its own, and
    unshared uniform sampling is not promised to match: no common score then."""
    def scores(name: str, *overrides: str) -> dict:
        cfg = _study_cfg(tmp_path, "study.seeds=[0,1]", "study.controllers=[enas_lstm,random]", *overrides)
        planned = plan_study(cfg, tmp_path / name)
        for round_dir, seed, step in planned:
            _fake_outputs(step, round_dir, seed)
        return study_steps.winner_scores(planned)

    expected = {"enas_lstm": {0: pytest.approx(0.54), 1: pytest.approx(0.55)}, "random": {0: 0.5, 1: 0.51}}
    assert scores("shared") == expected
    assert scores("sandwich_unshared", "study.share_supernet=false") == expected
    assert scores("uniform_shared", f"study.search_overrides={_hydra_list(['trainer.sampling=uniform'])}") == expected
    assert scores("uniform_unshared", "study.share_supernet=false",
                  f"study.search_overrides={_hydra_list(['trainer.sampling=uniform'])}") == {}
    assert scores("controller", f"study.search_overrides={_hydra_list(['trainer.sampling=controller'])}") == {}


def test_searches_that_follow_a_supernet_run_after_it_and_before_the_winners(tmp_path, monkeypatch, no_data):
    cfg = _study_cfg(tmp_path, "study.seeds=[0,1]", "study.controllers=[enas_lstm,random]", "study.remeasure_rounds=0")
    ran: list[str] = []

    def fake_run(step, round_dir, *, threads=None):
        ran.append(f"{round_dir.name}/{step.name}")
        _fake_outputs(step, round_dir, int(round_dir.name.removeprefix("seed_")))

    monkeypatch.setattr(study_steps, "run_step", fake_run)
    run_study(cfg, tmp_path / "out")
    followers = [ran.index(f"seed_{s}/search_random") for s in (0, 1)]
    assert max(ran.index(f"seed_{s}/search_enas_lstm") for s in (0, 1)) < min(followers)
    assert max(followers) < min(ran.index(f"seed_{s}/train_{c}_t{s}") for s in (0, 1) for c in ("enas_lstm", "random"))


def test_a_preset_with_fixed_training_seeds_is_retrained_once_for_all_rounds(tmp_path, monkeypatch, no_data):
    """With study.train_seeds set, a preset's retraining is the same run in every round: it
    runs once, and each round reads it; the winners are retrained per round."""
    cfg = _study_cfg(tmp_path, "study.seeds=[0,1,2]", "study.controllers=[enas_lstm,random]",
                     "study.train_seeds=[0,1]", "study.remeasure_rounds=0")
    out = tmp_path / "out"
    ran: list[tuple[str, str]] = []

    def fake_run(step, round_dir, *, threads=None):
        ran.append((round_dir.name, step.name))
        _fake_outputs(step, round_dir, int(round_dir.name.removeprefix("seed_")))

    monkeypatch.setattr(study_steps, "run_step", fake_run)
    run_study(cfg, out)
    presets = sorted(run for run in ran if "mobilenetv3_small" in run[1])
    assert presets == [("seed_0", "train_mobilenetv3_small_t0"), ("seed_0", "train_mobilenetv3_small_t1")]
    assert len(ran) == 3 * 2 + 3 * 2 * 2 + 2  # searches, winners per round and seed, the preset per seed
    runs = json.loads((out / "study_summary.json").read_text())["runs"]
    preset_rows = [r for r in runs if r["method"] == "preset:mobilenetv3_small"]
    assert sorted((r["seed"], r["train_seed"]) for r in preset_rows) == [(s, t) for s in range(3) for t in range(2)]
    assert "preset:mobilenetv3_small: the same trainings in every search seed's round" in (out / "study.md").read_text()


def test_retiming_replaces_every_latency_by_a_side_by_side_reading(tmp_path, monkeypatch):
    import nas.latency.side_by_side as side_by_side
    from nas.evaluate.study_report import retime_side_by_side

    timed: list[tuple[list[str], int]] = []

    def fake(paths, *, rounds, latency):
        timed.append(([str(p) for p in paths], rounds))
        return [0.5 + i for i in range(len(paths))]

    monkeypatch.setattr(side_by_side, "latency_side_by_side", fake)
    rows = [replace(_row(m, 0, 0.7, latency=9.0), run_dir=str(tmp_path / m), latency_runtime="torch fp32")
            for m in ("enas", "random")]
    retimed = retime_side_by_side(rows, 5)
    assert timed == [([str(tmp_path / "enas" / "model.pt"), str(tmp_path / "random" / "model.pt")], 5)]
    assert [r.latency_ms for r in retimed] == [0.5, 1.5]
    assert {r.latency_runtime for r in retimed} == {"onnxruntime fp32"}  # the default latency_measure runtime
    assert [r.accuracy for r in retimed] == [r.accuracy for r in rows]

    timed.clear()  # a model several rows read (a preset shared by the rounds) is timed once
    shared = rows + [replace(rows[1], seed=1)]
    assert [r.latency_ms for r in retime_side_by_side(shared, 5)] == [0.5, 1.5, 1.5]
    assert len(timed[0][0]) == 2


def test_a_run_without_recording_accuracy_is_named(tmp_path):
    from nas.evaluate.study_report import read_row

    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "f1_macro": 0.4, "latency_ms": 1.0}))
    with pytest.raises(ValueError, match="recording_accuracy"):
        read_row(tmp_path, method="random", seed=0, train_seed=0)


# ---- end to end -----------------------------------------------------------------------


@pytest.mark.slow
def test_study_runs_end_to_end_and_resumes(tmp_path):
    """The console command on tiny generated audio: 2 seeds x 2 controllers + a preset,
    then the same command again, which finds everything done."""
    root = write_tone_dataset(tmp_path / "audio")
    out = tmp_path / "study"
    search_overrides = _hydra_list([*TINY_SEARCH, "trainer.sampling=uniform",
                                    f"latency_table.cache_dir={tmp_path / 'latency'}"])
    command = [
        sys.executable, "-m", "experiments.study",
        f"hydra.run.dir={out}", f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}",
        "data.n_mels=32", "data.num_workers=1", "data.batch_size=16", "study.experiment=null",
        "study.seeds=[0,1]", "study.controllers=[enas_lstm,random]",
        f"study.search_overrides={search_overrides}",
        f"study.train_overrides={_hydra_list(['train.epochs=2', 'latency_measure.repeats=3', 'latency_measure.warmup=1'])}",
        f"study.preset_overrides={_hydra_list(['search_space.width=0.25'])}",
    ]
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| enas_lstm | 2 |" in done.stdout and "ran 10 step(s)" in done.stdout
    for seed in (0, 1):
        assert (out / f"seed_{seed}" / "train_random_t" f"{seed}" / "metrics.json").is_file()
    summary = json.loads((out / "study_summary.json").read_text())
    assert {r["method"] for r in summary["runs"]} == {"enas_lstm", "random", "preset:mobilenetv3_small"}
    assert (out / "study.png").is_file()
    for seed in (0, 1):  # random search followed the ENAS search's supernet instead of training it again
        assert (out / f"seed_{seed}" / "search_enas_lstm" / "checkpoints" / "supernet_epoch_001.pt").is_file()
        epochs = json.loads((out / f"seed_{seed}" / "search_random" / "search_summary.json").read_text())["epochs"]
        assert all("shared_trained_s" in e for e in epochs)
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ran 0 step(s)" in again.stdout


def _what_a_worker_sees(step) -> tuple[str, str]:
    return step.name, step.cfg.hydra.runtime.choices.controller


def test_planned_steps_cross_to_worker_processes(tmp_path):
    """study.jobs > 1 sends each step to a spawned process (as run_study's pool does): it must arrive whole."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    _, _, step = plan_study(_study_cfg(tmp_path, "study.seeds=[0]", "study.controllers=[random]"),
                            tmp_path / "out")[0]
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        assert pool.submit(_what_a_worker_sees, step).result(timeout=120) == (step.name, "random")
