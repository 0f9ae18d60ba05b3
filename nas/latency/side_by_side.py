"""Time several trained models side by side, so that their latencies compare.

A ``metrics.json`` latency was measured when its run ended. On a shared machine the
load differs from one run to the next (the same MobileNetV3-Small read 2.9 ms at the
start of a NetAdapt run and 6.3 ms in the metrics at its end), so latencies of runs
made at different times mislead a Pareto plot. Timing every model in turns, round
after round (``nas.latency.relative.time_in_turns``), and keeping each one's median
puts all of them under the same load.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

from nas.io.model_file import TrainedModel, load_model
from nas.latency.measure import LatencySettings, measure_latency
from nas.latency.relative import time_in_turns


def latency_side_by_side(
    model_paths: Sequence[str | Path], *, rounds: int, latency: LatencySettings = LatencySettings()
) -> list[float]:
    """Per ``model.pt``, the median over ``rounds`` of its CPU latency (ms, batch 1) in
    ``latency.runtime``, the models timed in turns within each round."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    missing = [str(p) for p in model_paths if not Path(p).is_file()]
    if missing:
        raise ValueError(f"cannot re-measure: model file(s) not found: {missing}")

    runtime = latency.cpu_runtime()

    def measure(trained: TrainedModel) -> float:
        return measure_latency(
            trained.model, trained.input_shape, device="cpu", threads=latency.threads,
            warmup=latency.warmup, repeats=latency.repeats, statistic=latency.statistic,
            runtime=runtime, min_time_ms=latency.min_time_ms,
        )

    readings = time_in_turns([load_model(p) for p in model_paths], measure, rounds)
    return [statistics.median(times) for times in readings]
