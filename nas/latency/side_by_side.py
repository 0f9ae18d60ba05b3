"""Time several trained models side by side, so that their latencies compare.

A ``metrics.json`` latency was measured when its run ended. On a shared machine the
load differs from one run to the next (the same MobileNetV3-Small read 2.9 ms at the
start of a NetAdapt run and 6.3 ms in the metrics at its end), so latencies of runs
made at different times mislead a Pareto plot. Here every round times all the models
interleaved over ``ROUND_SPAN_MS`` (``nas.latency.timing.time_interleaved``: each one
reaches the machine's fast phases), and each model keeps its median over the rounds.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from nas.io.model_file import load_model
from nas.latency.measure import LatencySettings
from nas.latency.runtimes import OnnxRuntime, Run
from nas.latency.timing import time_interleaved
from nas.runtime import torch_threads

# Each round spans at least this much wall time: the fast and slow phases of a shared VM
# last up to 4 s, and a round within one slow phase reads every model slow alike (the
# median over rounds then drops it).
ROUND_SPAN_MS = 2000.0


def latency_side_by_side(
    model_paths: Sequence[str | Path], *, rounds: int, latency: LatencySettings = LatencySettings()
) -> list[float]:
    """Per ``model.pt``, the median over ``rounds`` of its CPU latency (ms, batch 1) in
    ``latency.runtime`` (an exported ``.onnx`` file, e.g. int8: in its own ONNX Runtime
    session), the models timed interleaved within each round. Each model is prepared for
    its runtime once (export, session), then only timed."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    missing = [str(p) for p in model_paths if not Path(p).is_file()]
    if missing:
        raise ValueError(f"cannot re-measure: model file(s) not found: {missing}")

    runtime = latency.cpu_runtime()

    def prepare(path: str | Path) -> Run:
        if str(path).endswith(".onnx"):
            return _onnx_file_run(Path(path), threads=latency.threads)
        trained = load_model(path)
        inputs = [torch.randn((1, *trained.input_shape), generator=torch.Generator().manual_seed(0))]
        return runtime.prepare(trained.model.cpu().eval(), inputs, threads=latency.threads)

    runs = [prepare(p) for p in model_paths]
    with torch_threads(latency.threads), torch.no_grad():
        readings = [
            time_interleaved(runs, warmup=latency.warmup, repeats=latency.repeats, statistic=latency.statistic,
                             min_time_ms=latency.min_time_ms, min_span_ms=ROUND_SPAN_MS)
            for _ in range(rounds)
        ]
    return [statistics.median(per_round) for per_round in zip(*readings)]


def _onnx_file_run(path: Path, *, threads: int) -> Run:
    """One batch-1 run of an exported file (float or int8) in its own ONNX Runtime session."""
    import onnx

    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    if "input_shape" not in meta:
        raise ValueError(f"{path} has no melnas metadata (input_shape): export it with melnas-export")
    shape = json.loads(meta["input_shape"])
    feed = {proto.graph.input[0].name: np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)}
    session = OnnxRuntime().session(proto.SerializeToString(), threads=threads)
    return lambda: session.run(None, feed)
