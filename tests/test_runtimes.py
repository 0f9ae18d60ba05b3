"""Latency runtimes (nas.latency.runtimes): table keys, the timing loop, exported outputs, int8."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import nas.latency.measure as latency
from nas.data.dataset import open_prepared
from nas.errors import MelnasError
from nas.evaluate.compare import collect_rows
from nas.evaluate.cost import count_macs, count_params
from nas.evaluate.export import export_onnx
from nas.evaluate.metrics import format_summary
from nas.evaluate.onnx_eval import evaluate_onnx_file
from nas.evaluate.quantized import OnnxClassifier, export_int8, model_windows
from nas.io.model_file import load_model
from nas.latency.measure import LatencySettings, latency_table_for, measure_latency
from nas.latency.runtimes import OnnxRuntime, Runtime, TorchScriptRuntime, make_runtime
from nas.latency.settings import LatencyTableSettings
from tests.test_cost import ToySpace
from tests.test_latency import fake_measure  # noqa: F401 (fixture)
from tests.test_train_fixtures import tiny_cache, tiny_trained  # noqa: F401 (fixtures)

SHAPE = (1, 8, 6)
# Float tolerance of an fp32 export: BN folded into the conv weights and other kernels
# (im2col vs direct, other summation order) change float32 rounding; for logits of order
# 1 over a few hundred accumulations that is ~1e-6..1e-5. melnas-export checks 1e-4.
FP32_ATOL = 1e-4


def _table(tmp_path, **kw):
    space = ToySpace()
    return space, latency_table_for(space, num_classes=3, input_shape=SHAPE, cache_dir=tmp_path,
                                    calibration_archs=0, **kw)


# ---- table keys ---------------------------------------------------------------------------


def test_table_keys_separate_runtimes_versions_and_settings(tmp_path, fake_measure):
    tables = {name: _table(tmp_path, runtime=name)[1] for name in ("torch", "torchscript", "onnxruntime")}
    tables["int8"] = _table(tmp_path, runtime="onnxruntime", precision="int8")[1]
    assert len({t.path for t in tables.values()}) == 4
    ort = tables["onnxruntime"].context["runtime"]
    import onnxruntime

    assert ort["name"] == "onnxruntime" and ort["version"] == onnxruntime.__version__
    assert ort["graph_optimization"] == "ORT_ENABLE_ALL" and ort["provider"] == "CPUExecutionProvider"
    assert tables["int8"].context["runtime"]["precision"] == "int8"
    assert tables["torch"].context["torch"] == torch.__version__ and "runtime" not in tables["torch"].context
    assert _table(tmp_path, runtime="onnxruntime", threads=2)[1].path != tables["onnxruntime"].path
    # auto is onnxruntime on the CPU: the very same file
    assert _table(tmp_path)[1].path == tables["onnxruntime"].path


def test_a_table_of_one_runtime_is_not_reused_for_another(tmp_path, fake_measure):
    space, torch_table = _table(tmp_path, runtime="torch")
    arch = space.arch([1, (), 1, (), 1, ()])
    torch_table.predict_arch(space, arch)
    calls = len(fake_measure.calls)
    assert all(type(r) is Runtime for r in fake_measure.runtimes)
    _, ort_table = _table(tmp_path, runtime="onnxruntime")
    ort_table.predict_arch(space, arch)  # nothing of the torch table is read: every unit is timed again
    assert len(fake_measure.calls) > calls
    assert all(isinstance(r, OnnxRuntime) for r in fake_measure.runtimes[calls:])
    # a file of one runtime, opened with another runtime's context, is refused
    with pytest.raises(ValueError, match="another context"):
        latency.LatencyTable(torch_table.path, ort_table.context, measure=torch_table.measure)


def test_compiled_runtime_units_are_net_of_the_call_overhead(tmp_path, fake_measure):
    # FakeMeasure: the parameter-free null call costs 1 ms, a unit 1 + params / 100 ms
    space, table = _table(tmp_path, runtime="onnxruntime")
    arch = space.arch([1, (), 1, (), 1, ()])
    layers = table.layers_of(space, arch)
    raw = [1.0 + sum(p.numel() for p in u.build().parameters()) / 100 for u in layers]
    assert table.unit_sum(layers) == pytest.approx(sum(max(r - 1.0, 0.1 * r) for r in raw))
    assert any(k.startswith("call_overhead:") for k in json.loads(table.path.read_text())["units"])
    _, eager = _table(tmp_path, runtime="torch")  # eager pays dispatch per module in a network too
    assert eager.unit_sum(layers) == pytest.approx(sum(raw))


def test_settings_refuse_unknown_runtimes_and_int8_outside_onnxruntime():
    with pytest.raises(MelnasError, match="runtime"):
        LatencyTableSettings(runtime="tflite")
    with pytest.raises(MelnasError, match="int8 needs runtime=onnxruntime"):
        LatencyTableSettings(runtime="torch", precision="int8")
    with pytest.raises(ValueError, match="onnxruntime"):
        LatencySettings(runtime="torchscript", precision="int8")
    assert isinstance(make_runtime("auto", device="cpu"), OnnxRuntime)
    assert type(make_runtime("torch")) is Runtime and isinstance(make_runtime("torchscript"), TorchScriptRuntime)


# ---- measure_latency applies the runtime -------------------------------------------------------


class ClockRuntime(Runtime):
    """Records what it was prepared with; each run advances a fake clock by the next duration."""

    def __init__(self, durations):
        self.durations, self.now, self.runs, self.prepared = list(durations), 0.0, 0, []

    def prepare(self, model, inputs, *, threads):
        self.prepared.append(([tuple(x.shape) for x in inputs], threads, torch.get_num_threads()))

        def run():
            self.now += self.durations[min(self.runs, len(self.durations) - 1)]
            self.runs += 1

        return run


def test_measure_latency_times_the_runtime_run_not_the_module():
    model = nn.Linear(6, 2)
    model.forward = lambda *_: pytest.fail("the runtime's run, not the module, must be timed")
    clock = ClockRuntime([0.5, 0.5] + [0.004, 0.002, 0.003])  # 2 warm-up runs, then timed ones (s)
    ms = measure_latency(model, SHAPE, runtime=clock, warmup=2, repeats=3, threads=1, statistic="min",
                         timer=lambda: clock.now)
    assert ms == pytest.approx(2.0)
    assert clock.prepared == [([(1, *SHAPE)], 1, 1)] and clock.runs == 5
    # min_time_ms: timing goes on past `repeats` until the timed runs add up to it
    clock = ClockRuntime([0.001])
    measure_latency(model, SHAPE, runtime=clock, warmup=0, repeats=3, min_time_ms=10.0, timer=lambda: clock.now)
    assert clock.runs == 10


# ---- exported models give the model's outputs ------------------------------------------


@pytest.mark.parametrize("runtime", [TorchScriptRuntime(), OnnxRuntime()], ids=["torchscript", "onnxruntime"])
def test_prepared_runtime_outputs_match_the_model(runtime, tiny_trained):
    trained = load_model(tiny_trained.model_path)
    model = trained.model.eval()
    x = torch.randn(1, *trained.input_shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(x).numpy()
        out = runtime.prepare(model, [x], threads=1)()
    got = out[0] if isinstance(out, list) else out.numpy()
    np.testing.assert_allclose(got, expected, atol=FP32_ATOL, rtol=0)


def test_int8_export_agrees_with_the_float_model_and_is_evaluated(tiny_trained, tiny_cache, tmp_path):
    trained = load_model(tiny_trained.model_path)
    check = export_int8(trained, tmp_path / "model.int8.onnx", calibration_windows=64)
    windows, _ = model_windows(open_prepared(tiny_cache), "test", None)
    quantized = OnnxClassifier(check.path)
    assert quantized.precision == "int8"
    with torch.no_grad():
        expected = trained.model.eval()(torch.from_numpy(windows)).argmax(1).numpy()
    agreement = float(np.mean(quantized.logits(windows).argmax(1) == expected))
    assert agreement == pytest.approx(check.agreement) and check.checked_windows == len(windows)
    # int8 rounds each layer's activations to 1/255 of their calibrated range: a class flips
    # only where the float model's top-2 margin is that small. The tone classes are far apart,
    # so nearly all windows keep their class; 0.9 leaves room for a few borderline windows.
    assert agreement >= 0.9

    metrics = evaluate_onnx_file(check.path, out_dir=tmp_path / "eval",
                                 latency=LatencySettings(warmup=1, repeats=3, min_time_ms=0))
    assert metrics["precision"] == "int8" and metrics["latency_ms"] > 0
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["num_windows"] == len(windows)
    rows = collect_rows([tmp_path / "eval", tiny_trained.out_dir])
    assert sorted(r.precision for r in rows) == ["fp32", "int8"]
    assert len({r.arch_hash for r in rows}) == 1  # the two rows are the same network


def test_a_float_onnx_export_is_evaluated_with_the_networks_params_and_macs(tiny_trained, tmp_path):
    """The fp32 file carries the same record as the int8 one: melnas-eval's summary and
    melnas-compare's columns need params, MACs, hash and origin."""
    trained = load_model(tiny_trained.model_path)
    check = export_onnx(trained, tmp_path / "model.onnx")
    metrics = evaluate_onnx_file(check.path, out_dir=tmp_path / "eval",
                                 latency=LatencySettings(warmup=1, repeats=3, min_time_ms=0))
    assert metrics["precision"] == "fp32"
    assert (metrics["params"], metrics["macs"]) == (count_params(trained.model), count_macs(trained.model, trained.input_shape))
    assert metrics["arch_hash"] == trained.network_hash and metrics["origin"] == trained.info["origin"]
    assert f"params {metrics['params']:,}" in format_summary(metrics)


def test_histogram_calibration_takes_a_window_count_that_is_not_a_batch_multiple(tiny_trained, tmp_path):
    # ONNX Runtime's percentile and entropy calibrators fail on a short last batch
    trained = load_model(tiny_trained.model_path)
    check = export_int8(trained, tmp_path / "m.int8.onnx", method="percentile", calibration_windows=45)
    assert check.method == "percentile" and check.calibration_windows == 32
    assert OnnxClassifier(check.path).precision == "int8"


def test_a_one_model_measure_in_turns_keeps_the_fastest_reading(tmp_path):
    """A one-model timing function wrapped by ``in_turns``: every missing unit and its null
    call are read ``rounds`` times, in turns; the table keeps the fastest reading of each,
    net of the null call's."""
    space = ToySpace()
    readings: dict[str, list[float]] = {}

    def noisy(model, input_shape, *, num_inputs=1):
        """A model's n-th reading is its true time plus 2 ms, 0 ms, 1 ms (n = 0, 1, 2)."""
        name = f"{type(model).__name__} {sum(p.numel() for p in model.parameters())} {tuple(input_shape)}"
        true_ms = 1.0 + sum(p.numel() for p in model.parameters()) / 100.0
        got = readings.setdefault(name, [])
        got.append(true_ms + (2.0, 0.0, 1.0)[len(got) % 3])
        return got[-1]

    table = latency.LatencyTable(tmp_path / "t.json", {"statistic": "min"}, measure=latency.in_turns(noisy, rounds=3),
                                 net_of_call_overhead=True)
    layers = space.layers(space.arch([1, (), 1, (), 1, ()]), num_classes=3, input_shape=SHAPE)
    assert table.measure_missing(layers) == len({u.key for u in layers})
    assert readings and all(len(r) == 3 for r in readings.values()), "each unit and null call: 3 turns"
    null_ms = 1.0  # every null call's fastest reading (no parameters)
    assert [ms for key, ms in table.units.items() if key.startswith("call_overhead:")] == \
        pytest.approx([null_ms] * len({(u.input_shape, u.num_inputs) for u in layers}))
    for unit in layers:
        true_ms = 1.0 + sum(p.numel() for p in unit.build().parameters()) / 100.0
        assert table.units[unit.key] == pytest.approx(max(true_ms - null_ms, 0.1 * true_ms))
    assert table.measure_missing(layers) == 0, "a unit in the table is not timed again"


def _compose(config_name: str, *overrides: str):
    from hydra import compose, initialize_config_dir

    from nas.io.config_dirs import BUILTIN_CONF_DIR

    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def test_melnas_latency_takes_the_runtime_as_latency_runtime_or_latency_table_runtime():
    from experiments.latency import check_settings

    def runtime(*overrides: str) -> str:
        return check_settings(_compose("latency", *overrides)).latency_table.runtime

    assert runtime() == "auto"
    assert runtime("latency.runtime=torchscript") == "torchscript"  # the short spelling
    assert runtime("latency_table.runtime=torch") == "torch"


def test_melnas_latency_with_an_experiment_checks_the_table_that_experiments_searches_read():
    from experiments.latency import check_settings
    from experiments.settings import plain

    check = _compose("latency", "experiment=quick", "latency.runtime=onnxruntime")
    search = _compose("search", "experiment=quick", "latency_table.runtime=onnxruntime")
    assert plain(check.search_space) == plain(search.search_space)
    assert plain(check.latency_table) == plain(search.latency_table)
    assert check_settings(check).latency_table.calibration_archs == 5  # the quick search's, not the default 10
