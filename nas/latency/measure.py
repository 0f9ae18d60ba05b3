"""Inference latency: measured on a real forward pass, or predicted from a per-unit table.

``measure_latency`` times a module at batch 1 in a runtime (``nas.latency.runtimes``:
ONNX Runtime, TorchScript or eager torch; eval mode, no autograd, a fixed number of CPU
threads, warm-up, median or fastest of repeats; CUDA synchronised per call).
Prediction sums the measured latencies of an arch's ``space.layers(...)`` units
and applies a linear calibration fitted on whole-model measurements
(``nas.latency.table``); ``latency_table_for`` gives the table of this machine.
This module is the public entry point for both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from nas.data.dataset import open_prepared
from nas.io.lock import file_lock
from nas.latency.report import (
    ArchLatency,
    PredictionReport,
    evaluate_predictions,
    held_out_archs,
)
from nas.latency.runtimes import PRECISIONS, RUNTIMES, Runtime, make_runtime
from nas.latency.table import (
    BatchMeasure,
    Calibration,
    LatencyTable,
    Measure,
    TimedModel,
    fit_calibration,
    in_turns,
    prefill,
    spanning_archs,
)
from nas.latency.fingerprint import space_fingerprint
from nas.latency.timing import STATISTICS, check_timing, time_calls, time_interleaved
from nas.runtime import resolve_device, torch_threads
from search_spaces.base import InputShape, SearchSpace

log = logging.getLogger(__name__)

__all__ = [
    "AUDIO_INPUT_SHAPE",
    "DEFAULT_NUM_CLASSES",
    "ArchLatency",
    "BatchMeasure",
    "Calibration",
    "InterleavedTimer",
    "LatencyTable",
    "Measure",
    "ModelInput",
    "PredictionReport",
    "STATISTICS",
    "TimedModel",
    "default_cache_dir",
    "check_latency_table",
    "evaluate_predictions",
    "fit_calibration",
    "held_out_archs",
    "in_turns",
    "latency_table_for",
    "measure_latency",
    "resolve_model_input",
    "spanning_archs",
    "table_context",
    "time_calls",
    "time_interleaved",
]

AUDIO_INPUT_SHAPE = (1, 64, 63)  # 64 mel bands x 63 frames: 1 s at the default data settings
DEFAULT_NUM_CLASSES = 10


@dataclass(frozen=True)
class LatencySettings:
    """How latency is measured: batch 1, ``threads`` CPU threads, ``statistic`` (fastest
    or median) of ``repeats`` timed runs; the fastest is the default, as for the search's
    table, because a shared machine adds delays that only ever lengthen a run."""

    threads: int = 1
    warmup: int = 10
    repeats: int = 50
    statistic: str = "min"
    min_time_ms: float = 50.0  # time at least this long in all (more repeats for fast models)
    cuda: bool = True  # also measure on CUDA (eager torch) when a GPU is present
    runtime: str = "auto"  # onnxruntime | torchscript | torch; auto: onnxruntime on the CPU
    precision: str = "fp32"  # int8: onnxruntime, statically quantized

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES or self.precision not in PRECISIONS:
            raise ValueError(f"latency_measure: runtime={self.runtime!r} / precision={self.precision!r}: "
                             f"expected one of {list(RUNTIMES)} / {list(PRECISIONS)}")
        make_runtime(self.runtime, device="cpu", precision=self.precision)  # refuses int8 outside onnxruntime

    def cpu_runtime(self) -> Runtime:
        return make_runtime(self.runtime, device="cpu", precision=self.precision)


def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    device: str | torch.device = "cpu",
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    num_inputs: int = 1,
    statistic: str = "median",
    timer: Callable[[], float] = time.perf_counter,
    runtime: Runtime | None = None,
    min_time_ms: float = 0.0,
) -> float:
    """Median (or ``statistic``) wall time in ms of ``model(x)`` at batch 1 in ``runtime``
    (``None``: eager torch).

    ``input_shape`` excludes the batch dim.
    The model is moved to ``device`` and run in eval mode under ``torch.no_grad()``
    (its training flag is restored afterwards). ``num_inputs`` > 1 calls
    ``model(x_1, ..., x_n)`` with that many distinct random inputs of ``input_shape``.
    ``timer`` is the clock in seconds (a parameter so tests can control the readings).
    The runtime's preparation (tracing, export, session) happens before the warm-up and
    is not timed. Timing goes on past ``repeats`` until the timed runs add up to
    ``min_time_ms``: a 10 us ONNX Runtime unit timed 50 times spans half a millisecond,
    and one preemption in that window can spoil every run of it (the fastest of 500 runs of
    one unit read 12.6 and 18.9 us back to back on a loaded 2-core VM).
    """
    check_timing(warmup, repeats, statistic)
    if num_inputs < 1:
        raise ValueError(f"num_inputs must be >= 1, got {num_inputs}")
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"input_shape must be positive sizes without the batch dim, got {input_shape}")
    dev = resolve_device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    was_training = model.training
    model.to(dev).eval()
    runtime = runtime or Runtime()
    try:
        with torch_threads(threads), torch.no_grad():
            gen = torch.Generator().manual_seed(0)  # the caller's global RNG stream stays untouched
            inputs = [torch.randn((1, *shape), generator=gen).to(dev) for _ in range(num_inputs)]
            run = runtime.prepare(model, inputs, threads=threads)
            return time_calls(run, warmup=warmup, repeats=repeats, statistic=statistic, timer=timer,
                              min_time_ms=min_time_ms, sync=sync)
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class InterleavedTimer:
    """The table's measure (``nas.latency.table.BatchMeasure``): the models are prepared for
    ``runtime`` (export, session), then timed together by ``time_interleaved``."""

    device: torch.device
    runtime: Runtime
    threads: int = 1
    warmup: int = 10
    repeats: int = 50
    statistic: str = "median"
    min_time_ms: float = 0.0
    min_span_ms: float = 0.0

    def __call__(self, models: Sequence[TimedModel]) -> list[float]:
        sync = (lambda: torch.cuda.synchronize(self.device)) if self.device.type == "cuda" else (lambda: None)
        with torch_threads(self.threads), torch.no_grad():
            runs = [self._prepare(timed) for timed in models]
            return time_interleaved(runs, warmup=self.warmup, repeats=self.repeats, statistic=self.statistic,
                                    min_time_ms=self.min_time_ms, min_span_ms=self.min_span_ms, sync=sync)

    def _prepare(self, timed: TimedModel) -> Callable[[], Any]:
        gen = torch.Generator().manual_seed(0)  # the caller's global RNG stream stays untouched
        inputs = [torch.randn((1, *timed.input_shape), generator=gen).to(self.device) for _ in range(timed.num_inputs)]
        model = timed.model.to(self.device).eval()
        return self.runtime.prepare(model, inputs, threads=self.threads)


def default_cache_dir() -> Path:
    """``$MELNAS_CACHE/latency`` if ``MELNAS_CACHE`` is set, else ``~/.cache/melnas/latency``."""
    root = os.environ.get("MELNAS_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "melnas") / "latency"


def hardware_name(device: torch.device) -> str:
    """The processor the latencies belong to (tables must not travel between machines)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table_context(
    space: SearchSpace,
    *,
    num_classes: int,
    input_shape: InputShape,
    device: torch.device,
    threads: int,
    statistic: str = "median",
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """Everything a unit latency depends on; a table file belongs to exactly one context
    (the runtime's name, version and session settings included)."""
    runtime = runtime or Runtime()
    # Eager torch's context names no runtime ("torch" below is its version); other runtimes add theirs.
    compiled = {} if type(runtime) is Runtime else {
        "runtime": runtime.describe(), "units_net_of_call_overhead": runtime.per_call_overhead,
    }
    return {
        **compiled,
        "space": space.name,
        "space_fingerprint": space_fingerprint(space, num_classes=num_classes, input_shape=input_shape),
        "input_shape": [int(s) for s in input_shape],
        "num_classes": int(num_classes),
        "device": str(device),
        "hardware": hardware_name(device),
        "threads": int(threads),
        "statistic": statistic,
        # tables timed unit by unit in blocks (before time_interleaved) read up to 1.5x off
        # on a machine with slow phases: a new key makes them rebuild, not be reused
        "timing": "interleaved",
        "torch": torch.__version__,
    }


def latency_table_for(
    space: SearchSpace,
    *,
    num_classes: int,
    input_shape: InputShape,
    device: str = "cpu",
    threads: int = 1,
    cache_dir: str | Path | None = None,
    calibration_archs: int = 10,
    prefill_archs: int = 0,
    seed: int = 0,
    warmup: int = 10,
    repeats: int = 50,
    statistic: str = "median",
    runtime: str = "auto",
    precision: str = "fp32",
    min_time_ms: float = 0.0,
    min_span_ms: float = 0.0,
) -> LatencyTable:
    """The table of this machine for ``space`` at this input: loaded, or built and calibrated.

    A new table first measures the units of ``prefill_archs`` random archs in one batch
    (drawn with ``seed``), then is calibrated on ``calibration_archs`` archs spread over
    the cost range of random ones (``spanning_archs``); 0 leaves it uncalibrated
    (predictions are then raw unit sums). Later calls only read the file; a unit first met
    later (an arch outside the prefill) is measured then. Everything a call needs is timed
    together by ``InterleavedTimer`` in ``runtime`` (``make_runtime(runtime, device=device,
    precision=precision)``), each model for at least ``repeats`` runs and ``min_time_ms``,
    all of them spread over at least ``min_span_ms`` of wall time (``time_interleaved``).
    ``statistic`` (``"median"`` or ``"min"``, see ``STATISTICS``) applies to every
    measurement of the table, units and whole archs alike.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"latency.statistic={statistic!r} is not one of {sorted(STATISTICS)}")
    dev = resolve_device(device)
    backend = make_runtime(runtime, device=dev, precision=precision)
    context = table_context(
        space, num_classes=num_classes, input_shape=input_shape, device=dev, threads=threads, statistic=statistic,
        runtime=backend,
    )
    digest = hashlib.sha1(json.dumps(context, sort_keys=True).encode()).hexdigest()[:12]
    shape = "x".join(map(str, input_shape))
    kind = "" if type(backend) is Runtime else backend.label().replace(" ", "-") + "-"
    name = f"{space.name}-{dev.type}-{kind}{threads}t-{shape}-{statistic}-{digest}.json"
    measure = InterleavedTimer(
        device=dev, runtime=backend, threads=threads, warmup=warmup, repeats=repeats, statistic=statistic,
        min_time_ms=min_time_ms, min_span_ms=min_span_ms,
    )
    path = Path(cache_dir or default_cache_dir()).expanduser() / name
    # Jobs started together (a sweep, the ranks of a torchrun) build a new table once: the
    # first holds this lock while it calibrates, the others then read its file.
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(path.name + ".build.lock")):
        table = LatencyTable(path, context, measure=measure, net_of_call_overhead=backend.per_call_overhead)
        if not table.units:
            log.info("building the latency table %s (once per machine, space, runtime and input; later runs read "
                     "it): timing the units of %d random archs", path, prefill_archs)
            rng = np.random.default_rng(seed)
            prefill(table, space, [space.random_arch(rng) for _ in range(prefill_archs)])
        if table.calibration is None and calibration_archs > 0:
            log.info("calibrating the latency table on %d archs timed whole", calibration_archs)
            table.calibrate(space, spanning_archs(table, space, calibration_archs, seed=seed))
    return table


@dataclass(frozen=True)
class ModelInput:
    """What a model is built and timed for, and where that came from (for the console)."""

    num_classes: int
    input_shape: tuple[int, int, int]
    source: str


def resolve_model_input(
    *,
    data_cache: str | Path | None = None,
    num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
) -> ModelInput:
    """Explicit values win; then a prepared cache at ``data_cache`` (if that folder exists);
    then the audio default (1 x 64 mels x 63 frames, 10 classes)."""
    sources = []
    if data_cache is not None and Path(data_cache).expanduser().is_dir():
        data = open_prepared(data_cache)  # a folder that is not a usable cache is an error, not a default
        num_classes = num_classes or data.num_classes
        input_shape = input_shape or data.input_shape
        sources.append(f"prepared data in {data_cache}")
    if num_classes is None or input_shape is None:
        sources.append("audio default")
    shape = tuple(int(v) for v in (input_shape or AUDIO_INPUT_SHAPE))
    classes = int(num_classes or DEFAULT_NUM_CLASSES)
    if len(shape) != 3 or min(shape) < 1 or classes < 1:
        raise ValueError(f"need input_shape [channels, n_mels, frames] > 0 and num_classes >= 1, got {shape}, {classes}")
    return ModelInput(classes, shape, " + ".join(sources) or "given")  # type: ignore[arg-type]


def check_latency_table(
    space: SearchSpace,
    *,
    num_classes: int,
    input_shape: InputShape,
    num_archs: int = 20,
    seed: int = 1,
    progress: Callable[[ArchLatency], None] | None = None,
    **table_settings: Any,
) -> PredictionReport:
    """Build or load this machine's table (``latency_table_for(**table_settings)``), then
    predict and measure ``num_archs`` held-out random archs (drawn with ``seed``)."""
    table = latency_table_for(space, num_classes=num_classes, input_shape=input_shape, **table_settings)
    archs = held_out_archs(space, table, num_archs, seed=seed)
    return evaluate_predictions(table, space, archs, progress=progress)
