"""Latency measurement and the per-unit latency table (nas.latency.measure)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

import nas.latency.measure as latency
from nas.latency.measure import (
    Calibration,
    LatencyTable,
    check_latency_table,
    evaluate_predictions,
    fit_calibration,
    held_out_archs,
    latency_table_for,
    measure_latency,
    resolve_model_input,
    spanning_archs,
    time_interleaved,
)
from nas.io.config_dirs import BUILTIN_CONF_DIR
from nas.io.registry import available_spaces, build_space
from tests.test_cost import SumInputs, ToySpace

SHAPE = (1, 8, 6)


class FakeMeasure:
    """Stands in for the table's InterleavedTimer: 1 ms per parameter-free unit, else
    1 + params / 100 ms; records each model's inputs and each batch's size."""

    def __init__(self):
        self.calls: list[tuple[tuple[int, ...], int]] = []
        self.runtimes: list = []
        self.batches: list[int] = []

    def __call__(self, timer, models):
        self.batches.append(len(models))
        self.runtimes += [timer.runtime] * len(models)
        self.calls += [(tuple(m.input_shape), m.num_inputs) for m in models]
        return [1.0 + sum(p.numel() for p in m.model.parameters()) / 100.0 for m in models]


@pytest.fixture
def fake_measure(monkeypatch):
    fake = FakeMeasure()
    monkeypatch.setattr(latency.InterleavedTimer, "__call__", lambda timer, models: fake(timer, models))
    return fake


# ---- measure_latency ------------------------------------------------------------------


def test_measure_latency_restores_threads_and_mode():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    model.train()
    threads = torch.get_num_threads()
    ms = measure_latency(model, SHAPE, threads=1, warmup=1, repeats=3)
    assert ms > 0
    assert torch.get_num_threads() == threads
    assert model.training


class ScriptedModel(nn.Module):
    """Each forward call advances a fake clock by the next scripted duration (seconds) and
    records the torch thread count it ran under; ``fail_at`` makes that call raise."""

    def __init__(self, durations: list[float], fail_at: int | None = None) -> None:
        super().__init__()
        self.durations, self.fail_at = durations, fail_at
        self.now = 0.0
        self.threads_seen: list[int] = []

    def clock(self) -> float:
        return self.now

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        call = len(self.threads_seen)
        self.threads_seen.append(torch.get_num_threads())
        if call == self.fail_at:
            raise RuntimeError("model failed")
        self.now += self.durations[call]
        return x


# Warm-ups (first 3) are faster than every timed repeat: counted, they would move the
# minimum to 0.5 ms and the median of 8 values to (1 + 2) / 2 ms.
WARMUP_S = [0.0005] * 3
REPEATS_S = [0.005, 0.001, 0.003, 0.009, 0.002]


@pytest.mark.parametrize("statistic, expected_ms", [("min", 1.0), ("median", 3.0)])
def test_measure_latency_statistic_of_the_timed_repeats_only(statistic, expected_ms):
    model = ScriptedModel(WARMUP_S + REPEATS_S)
    ms = measure_latency(model, SHAPE, warmup=3, repeats=5, statistic=statistic, timer=model.clock)
    assert ms == pytest.approx(expected_ms)
    assert len(model.threads_seen) == 8


def test_measure_latency_applies_threads_and_restores_them_on_error():
    before = torch.get_num_threads()
    wanted = before + 1  # differs from the current count, so applying it is visible
    model = ScriptedModel(WARMUP_S + REPEATS_S)
    measure_latency(model, SHAPE, threads=wanted, warmup=3, repeats=5, timer=model.clock)
    assert model.threads_seen == [wanted] * 8
    assert torch.get_num_threads() == before

    failing = ScriptedModel(WARMUP_S + REPEATS_S, fail_at=4).train()
    with pytest.raises(RuntimeError, match="model failed"):
        measure_latency(failing, SHAPE, threads=wanted, warmup=3, repeats=5, timer=failing.clock)
    assert failing.threads_seen == [wanted] * 5
    assert torch.get_num_threads() == before
    assert failing.training


def test_measure_latency_multi_input_and_bad_arguments():
    assert measure_latency(SumInputs(), SHAPE, num_inputs=3, warmup=0, repeats=2) > 0
    conv = nn.Conv2d(1, 1, 1)
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(conv, SHAPE, repeats=0)
    with pytest.raises(ValueError, match="threads"):
        measure_latency(conv, SHAPE, threads=0)
    with pytest.raises(ValueError, match="input_shape"):
        measure_latency(conv, (1, -1, 3))
    with pytest.raises(ValueError, match="statistic"):
        measure_latency(conv, SHAPE, statistic="mean")
    assert measure_latency(conv, SHAPE, warmup=0, repeats=3, statistic="min") > 0


class SlowPhaseClock:
    """A fake clock on which every call costs ``ms[name]`` while the machine is fast and
    ``slowdown`` times as much before ``fast_from`` (seconds): a slow phase that a model
    timed in one block at the start would see alone."""

    def __init__(self, ms: dict[str, float], *, slowdown: float = 1.5, fast_from: float = 0.2) -> None:
        self.ms, self.slowdown, self.fast_from = ms, slowdown, fast_from
        self.now = 0.0
        self.order: list[str] = []

    def run(self, name: str):
        def call() -> None:
            factor = self.slowdown if self.now < self.fast_from else 1.0
            self.now += factor * self.ms[name] / 1000.0
            self.order.append(name)
        return call


def test_time_interleaved_spreads_every_run_over_the_span():
    clock = SlowPhaseClock({"a": 1.0, "b": 2.0})
    runs = [clock.run("a"), clock.run("b")]
    # in one block each, both are done within the slow phase: both read 1.5x
    block = time_interleaved(runs, warmup=0, repeats=20, statistic="min", timer=lambda: clock.now)
    assert block == pytest.approx([1.5, 3.0])
    # spread over 0.5 s, both see the fast phase that follows
    clock.now, clock.order = 0.0, []
    spread = time_interleaved(runs, warmup=0, repeats=20, statistic="min", min_span_ms=500.0,
                              timer=lambda: clock.now)
    assert spread == pytest.approx([1.0, 2.0])
    assert clock.now >= 0.5
    # windows of 10 calls, the round's first run rotating: a a.. b b.. | b b.. a a.. | ...
    assert clock.order[:40] == ["a"] * 10 + ["b"] * 20 + ["a"] * 10


def test_time_interleaved_quotas_and_arguments():
    clock = SlowPhaseClock({"fast": 0.1, "slow": 5.0}, slowdown=1.0)
    runs = [clock.run("fast"), clock.run("slow")]
    time_interleaved(runs, warmup=2, repeats=3, min_time_ms=4.0, statistic="median", timer=lambda: clock.now)
    # warm-ups 2 each; past the (zero) span a run makes up only what it lacks: "slow" its 3
    # repeats, "fast" windows until its calls add up to 4 ms
    assert clock.order.count("slow") == 2 + 3
    assert 2 + 40 <= clock.order.count("fast") <= 2 + 50
    # within a span, a run slower than window_ms (1 ms) per call gets windows of 2 calls
    clock.now, clock.order = 0.0, []
    time_interleaved(runs, warmup=1, repeats=1, min_span_ms=30.0, timer=lambda: clock.now)
    assert clock.order[2:16] == ["fast"] * 10 + ["slow"] * 2 + ["slow"] * 2
    assert time_interleaved([], repeats=3) == []
    with pytest.raises(ValueError, match="window_calls"):
        time_interleaved(runs, window_calls=0)


# ---- calibration fit --------------------------------------------------------------------


def test_fit_calibration_recovers_a_linear_map():
    sums = np.array([1.0, 2.0, 3.0, 5.0])
    scale, offset = fit_calibration(sums, 1.3 * sums + 0.4)
    assert scale == pytest.approx(1.3) and offset == pytest.approx(0.4)


def test_fit_calibration_falls_back_to_a_ratio():
    # two archs, or sums too alike to tell slope from offset: a scale only
    assert fit_calibration([2.0, 4.0], [3.0, 6.0]) == pytest.approx((1.5, 0.0))
    assert fit_calibration([2.0, 2.1, 2.05], [4.0, 4.2, 4.1]) == pytest.approx((2.0, 0.0))
    # a negative offset (noise) is refused: small archs would be predicted near or below zero
    scale, offset = fit_calibration([1.0, 2.0, 4.0], [1.0, 3.0, 7.0])
    assert offset == 0.0 and scale == pytest.approx(1.5)  # median of 1, 1.5, 1.75
    with pytest.raises(ValueError):
        fit_calibration([1.0, 0.0], [1.0, 1.0])


def test_fit_calibration_refuses_a_flat_fit_to_noise():
    # whole latencies that do not follow the unit sums (noise): least squares would
    # answer ~0.03 * sum + 6.4 ms, erasing every difference between archs
    sums = [3.0, 3.1, 3.2, 3.3, 3.4, 3.5]
    measured = [6.9, 5.9, 6.9, 6.0, 7.2, 6.3]
    scale, offset = fit_calibration(sums, measured)
    assert offset == 0.0 and scale == pytest.approx(2.0, rel=0.02)


def test_spanning_archs_cover_the_cost_range(tmp_path, fake_measure):
    space, table = _table(tmp_path)
    picked = spanning_archs(table, space, 4, seed=0)
    costs = [table.unit_sum(table.layers_of(space, a)) for a in picked]
    pool_rng = np.random.default_rng(0)
    pool = [table.unit_sum(table.layers_of(space, space.random_arch(pool_rng))) for _ in range(20)]
    assert len(picked) == 4 and costs == sorted(costs)
    assert costs[0] == min(pool) and costs[-1] == max(pool)


# ---- the table --------------------------------------------------------------------------


def _table(tmp_path, space=None, **kw):
    space = space or ToySpace()
    kw.setdefault("calibration_archs", 0)
    kw.setdefault("runtime", "torch")  # units are raw times (no call-overhead subtraction)
    return space, latency_table_for(space, num_classes=3, input_shape=SHAPE, cache_dir=tmp_path, **kw)


def test_unknown_units_are_measured_once_and_saved(tmp_path, fake_measure):
    space, table = _table(tmp_path)
    arch = space.arch([3, (), 1, (0,), 3, (0, 1)])
    layers = space.layers(arch, num_classes=3, input_shape=SHAPE)
    predicted = table.predict(layers)
    # stem 36, conv3 144, conv1 16, head 4*3+3 (all / 100 + 1 ms), two sum units (1 ms each)
    expected = sum(1.0 + p / 100 for p in (36, 144, 16, 144, 15)) + 2 * 1.0
    assert predicted == pytest.approx(expected)
    assert len(fake_measure.calls) == len({u.key for u in layers}) == 6  # conv3 appears twice
    assert fake_measure.batches == [6], "the missing units are timed together, in one batch"
    assert sorted(n for _, n in fake_measure.calls) == [1, 1, 1, 1, 2, 3]  # sums get their inputs

    # a second table on the same file measures nothing
    _, again = _table(tmp_path)
    assert again.path == table.path
    assert again.predict_arch(space, arch) == pytest.approx(expected)
    assert len(fake_measure.calls) == 6
    saved = json.loads(table.path.read_text())
    assert set(saved["units"]) == {u.key for u in layers}
    assert saved["context"]["threads"] == 1 and saved["context"]["input_shape"] == list(SHAPE)


def test_a_new_table_times_its_prefill_and_its_calibration_archs_in_batches(tmp_path, fake_measure):
    space = ToySpace()
    rng = np.random.default_rng(0)  # the prefill's draw (seed 0)
    prefill_keys = {u.key for _ in range(5) for u in space.layers(space.random_arch(rng), num_classes=3,
                                                                   input_shape=SHAPE)}
    _, table = _table(tmp_path, prefill_archs=5, calibration_archs=3)
    assert fake_measure.batches[0] == len(prefill_keys), "the prefill's units: one batch"
    assert fake_measure.batches[-1] == 3, "the calibration archs, whole: one batch"
    assert prefill_keys <= set(table.units)
    # without calibration a new table is still prefilled; an existing one is only read
    fake_measure.batches.clear()
    _table(tmp_path / "uncalibrated", prefill_archs=5, calibration_archs=0)
    assert fake_measure.batches == [len(prefill_keys)]
    _table(tmp_path / "uncalibrated", prefill_archs=5, calibration_archs=0)
    assert fake_measure.batches == [len(prefill_keys)]


def test_contexts_get_their_own_files(tmp_path, fake_measure):
    space, base = _table(tmp_path)
    paths = {
        base.path,
        _table(tmp_path, threads=2)[1].path,
        _table(tmp_path, statistic="min")[1].path,
        latency_table_for(space, num_classes=3, input_shape=(1, 8, 8), cache_dir=tmp_path, calibration_archs=0).path,
        latency_table_for(space, num_classes=4, input_shape=SHAPE, cache_dir=tmp_path, calibration_archs=0).path,
        _table(tmp_path, ToySpace(width=6))[1].path,  # same name, other config
    }
    assert len(paths) == 6
    with pytest.raises(ValueError, match="not 'other'"):
        other = ToySpace()
        other.name = "other"
        base.predict_arch(other, other.random_arch(np.random.default_rng(0)))


def test_concurrent_writers_are_merged(tmp_path, fake_measure):
    space, first = _table(tmp_path)
    _, second = _table(tmp_path)
    a = space.arch([1, (), 1, (), 1, ()])
    b = space.arch([3, (), 3, (), 3, ()])
    first.predict_arch(space, a)
    second.predict_arch(space, b)  # saved after first: must keep first's units
    keys = set(json.loads(first.path.read_text())["units"])
    assert {u.key for u in first.layers_of(space, a)} | {u.key for u in first.layers_of(space, b)} == keys


def test_every_process_predicts_with_the_first_saved_value_of_a_unit(tmp_path):
    # Two ranks meet the same new unit; the second times it while the first saves its own
    # timing. Both must then predict with the saved value (and a later run reads it too),
    # and a unit already on disk is not timed again.
    space = ToySpace()
    context = {"space": space.name, "num_classes": 3, "input_shape": list(SHAPE)}
    arch = space.arch([3, (), 1, (0,), 3, (0, 1)])
    path = tmp_path / "table.json"
    timed_again = []
    third = LatencyTable(path, context, measure=lambda models: timed_again.append(models) or [])  # holds no units
    first = LatencyTable(path, context, measure=lambda models: [1.0] * len(models))

    def second_measure(models):
        first.predict_arch(space, arch)
        return [5.0] * len(models)

    second = LatencyTable(path, context, measure=second_measure)
    assert second.predict_arch(space, arch) == first.predict_arch(space, arch) == pytest.approx(
        len(first.layers_of(space, arch)))
    assert third.predict_arch(space, arch) == first.predict_arch(space, arch) and timed_again == []


@pytest.mark.parametrize("timings, expected_timings, kept", [
    (["noisy", "clean", "noisy"], 2, "clean"),  # a clean fit ends the retries
    (["noisier", "noisy", "noisier"], 3, "noisy"),  # never clean: three timings, the best fit kept
])
def test_a_calibration_timed_under_interference_is_timed_again(tmp_path, fake_measure, monkeypatch,
                                                               timings, expected_timings, kept):
    # whole models are 1.5x their unit sum; a noisy timing inflates every other arch by 20%
    # (40%: noisier), as a burst of load from another process would
    bursts = {"clean": 0.0, "noisy": 0.2, "noisier": 0.4}

    def timed_as(sequence: list[str], calls: list[float]):
        def whole(self, space, archs):
            burst = bursts[sequence[len(calls)]]
            calls.append(burst)
            return [1.5 * self.unit_sum(self.layers_of(space, a)) * (1 + burst * (i % 2)) for i, a in enumerate(archs)]
        return whole

    calls: list[float] = []
    monkeypatch.setattr(LatencyTable, "measure_archs", timed_as(timings, calls))
    _, table = _table(tmp_path / "retried", calibration_archs=6)
    assert len(calls) == expected_timings
    monkeypatch.setattr(LatencyTable, "measure_archs", timed_as([kept] * 3, []))
    _, reference = _table(tmp_path / "reference", calibration_archs=6)
    assert table.calibration == reference.calibration
    assert (table.calibration.fit_error_pct <= 3.0) == (kept == "clean")


def test_calibration_is_fitted_stored_and_applied(tmp_path, fake_measure, monkeypatch):
    # whole models "measure" 1.5x their unit sum plus 2 ms
    def whole(self, space, archs):
        return [1.5 * self.unit_sum(self.layers_of(space, arch)) + 2.0 for arch in archs]

    monkeypatch.setattr(LatencyTable, "measure_archs", whole)
    space, table = _table(tmp_path, calibration_archs=6)
    assert table.calibration.scale == pytest.approx(1.5)
    assert table.calibration.offset_ms == pytest.approx(2.0)
    assert len(table.calibration.arch_hashes) == 6
    arch = space.random_arch(np.random.default_rng(7))
    raw = table.unit_sum(table.layers_of(space, arch))
    assert table.predict_arch(space, arch) == pytest.approx(1.5 * raw + 2.0)

    reloaded = LatencyTable(table.path, table.context, measure=table.measure)
    assert reloaded.calibration == table.calibration
    held = held_out_archs(space, reloaded, 5, seed=0)  # seed 0 drew the calibration archs too
    assert not {a.hash for a in held} & set(table.calibration.arch_hashes)
    report = evaluate_predictions(reloaded, space, held)
    assert report.median_abs_error_pct == pytest.approx(0.0, abs=1e-9)
    assert report.kendall_tau == pytest.approx(1.0)
    assert report.table_path == table.path


def test_bad_table_files_are_reported(tmp_path, fake_measure):
    space, table = _table(tmp_path)
    table.predict_arch(space, space.arch([1, (), 1, (), 1, ()]))
    data = json.loads(table.path.read_text())
    data["context"]["threads"] = 8
    table.path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="another context"):
        _table(tmp_path)
    table.path.write_text("{not json")
    with pytest.raises(ValueError, match="delete it"):
        _table(tmp_path)


def test_default_cache_dir_follows_melnas_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MELNAS_CACHE", str(tmp_path))
    assert latency.default_cache_dir() == tmp_path / "latency"
    monkeypatch.delenv("MELNAS_CACHE")
    assert latency.default_cache_dir().parts[-3:] == (".cache", "melnas", "latency")


def test_measuring_leaves_the_global_rng_alone(tmp_path):
    """A search measuring a new unit mid-run must continue as if the unit had been known."""
    space, table = _table(tmp_path)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    table.predict_arch(space, space.arch([3, (), 1, (0,), 3, (0, 1)]))  # measures 6 units for real
    table.measure_arch(space, space.arch([1, (), 1, (), 1, ()]))
    assert len(table.units) == 6
    assert torch.equal(torch.get_rng_state(), state)


def test_real_measurements_end_to_end(tmp_path):
    """No fakes: a small calibrated table predicts positive latencies for held-out archs."""
    space = ToySpace(width=8)
    table = latency_table_for(
        space, num_classes=3, input_shape=(1, 16, 16), cache_dir=tmp_path,
        calibration_archs=4, warmup=2, repeats=5,
    )
    assert isinstance(table.calibration, Calibration) and table.calibration.scale > 0
    report = evaluate_predictions(table, space, held_out_archs(space, table, 3, seed=1))
    assert len(report.rows) == 3
    assert all(r.predicted_ms > 0 and r.measured_ms > 0 for r in report.rows)
    assert np.isfinite(report.max_abs_error_pct)


# ---- melnas-latency's config --------------------------------------------------------


@pytest.mark.parametrize("space_name", available_spaces())
def test_latency_config_composes_and_runs(space_name, tmp_path):
    """conf/latency.yaml's `latency_table:` keys are latency_table_for's arguments, for every space."""
    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="latency",
            overrides=[
                f"search_space={space_name}", "num_archs=2", "input_shape=[1,16,16]", "num_classes=3",
                f"data.cache_dir={tmp_path / 'no_cache'}", f"latency_table.cache_dir={tmp_path}",
                "latency_table.calibration_archs=2", "latency_table.warmup=0", "latency_table.repeats=2",
                "latency_table.prefill_archs=3", "latency_table.min_time_ms=0", "latency_table.min_span_ms=0",
            ],
        )
    model_input = resolve_model_input(
        data_cache=cfg.data.cache_dir, num_classes=cfg.num_classes, input_shape=list(cfg.input_shape)
    )
    assert (model_input.num_classes, model_input.input_shape) == (3, (1, 16, 16))
    space = build_space(OmegaConf.to_container(cfg.search_space, resolve=True))
    report = check_latency_table(
        space, num_classes=3, input_shape=(1, 16, 16), num_archs=cfg.num_archs, seed=cfg.seed,
        **OmegaConf.to_container(cfg.latency_table, resolve=True),
    )
    assert len(report.rows) == 2 and report.table_path.parent == tmp_path
    assert report.calibration is not None and not {r.hash for r in report.rows} & set(report.calibration.arch_hashes)
    assert json.loads(json.dumps(report.to_json_dict()))["context"]["space"] == space_name


def test_model_input_defaults_and_missing_cache(tmp_path):
    default = resolve_model_input(data_cache=tmp_path / "absent")
    assert (default.num_classes, default.input_shape) == (10, (1, 64, 63))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="melnas-prepare"):  # a folder that is not a cache is an error
        resolve_model_input(data_cache=tmp_path / "empty")


EDITED_SPACE = '''from torch import nn
from tests.test_cost import ToySpace


class EditedSpace(ToySpace):
    def _conv(self, kernel):
        return nn.Sequential(nn.Conv2d(self.width, self.width, kernel, padding=kernel // 2, bias=False), nn.ReLU(){extra})
'''


def test_a_table_follows_the_code_of_its_space(tmp_path, monkeypatch):
    """A space author who changes how a unit is built but not its key gets a new table,
    not the old one's stale figures; the same code gives the same table."""
    import importlib.util
    import sys

    from nas.latency.fingerprint import space_fingerprint

    def fingerprint(name: str, extra: str) -> str:
        path = tmp_path / f"{name}.py"
        path.write_text(EDITED_SPACE.format(extra=extra))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return space_fingerprint(module.EditedSpace(), num_classes=3, input_shape=SHAPE)

    plain = fingerprint("space_a", "")
    assert fingerprint("space_b", "") == plain
    assert fingerprint("space_c", ", nn.Conv2d(self.width, self.width, 1, bias=False)") != plain


def test_a_table_follows_a_helper_file_of_blocks_the_space_imports(tmp_path, monkeypatch):
    """Blocks kept in a file of their own, returning plain torch layers: editing that file
    gives a new table too."""
    import importlib

    from nas.latency.fingerprint import space_fingerprint

    def fingerprint(folder: str, extra: str) -> str:
        where = tmp_path / folder
        where.mkdir()
        (where / "blocks_under_test.py").write_text(
            "from torch import nn\n\n\ndef block(width, kernel):\n"
            f"    return nn.Sequential(nn.Conv2d(width, width, kernel, padding=kernel // 2, bias=False), nn.ReLU(){extra})\n")
        (where / "space_under_test.py").write_text(
            "from tests.test_cost import ToySpace\nfrom blocks_under_test import block\n\n\n"
            "class HelperSpace(ToySpace):\n    def _conv(self, kernel):\n        return block(self.width, kernel)\n")
        with monkeypatch.context() as patch:
            patch.syspath_prepend(str(where))
            module = importlib.import_module("space_under_test")
            digest = space_fingerprint(module.HelperSpace(), num_classes=3, input_shape=SHAPE)
            del sys.modules["space_under_test"], sys.modules["blocks_under_test"]
        return digest

    plain = fingerprint("a", "")
    assert fingerprint("b", "") == plain
    assert fingerprint("c", ", nn.Conv2d(width, width, 1, bias=False)") != plain
