"""``LatencyTableSettings``: how the per-unit latency table is measured (the
``latency_table`` config group; ``conf/latency_table/default.yaml`` documents each key).

Measurement of one whole model (``latency_measure``) is ``nas.latency.measure.LatencySettings``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nas.errors import MelnasError
from nas.latency.runtimes import PRECISIONS, RUNTIMES

TABLE_STATISTICS = ("median", "min")


@dataclass(frozen=True)
class LatencyTableSettings:
    """The arguments of ``latency_table_for`` besides the space, input and seed."""

    device: str = "cpu"
    threads: int = 1
    cache_dir: str | None = None
    calibration_archs: int = 10
    prefill_archs: int = 500
    warmup: int = 10
    repeats: int = 50
    statistic: str = "min"
    runtime: str = "auto"
    precision: str = "fp32"
    min_time_ms: float = 50.0
    min_span_ms: float = 10000.0  # what is timed together is spread over at least this much wall time

    def __post_init__(self) -> None:
        if (self.threads < 1 or self.calibration_archs < 0 or self.prefill_archs < 0 or self.warmup < 0
                or self.repeats < 1 or self.min_time_ms < 0 or self.min_span_ms < 0):
            raise MelnasError(
                f"latency_table: need threads >= 1, calibration_archs >= 0, prefill_archs >= 0, warmup >= 0, "
                f"repeats >= 1, min_time_ms >= 0, min_span_ms >= 0; got threads={self.threads}, "
                f"calibration_archs={self.calibration_archs}, prefill_archs={self.prefill_archs}, "
                f"warmup={self.warmup}, repeats={self.repeats}, min_time_ms={self.min_time_ms}, "
                f"min_span_ms={self.min_span_ms}"
            )
        if self.statistic not in TABLE_STATISTICS:
            raise MelnasError(f"latency_table.statistic={self.statistic!r} is not one of {list(TABLE_STATISTICS)}")
        if self.runtime not in RUNTIMES or self.precision not in PRECISIONS:
            raise MelnasError(f"latency_table.runtime={self.runtime!r} / precision={self.precision!r}: expected "
                              f"one of {list(RUNTIMES)} / {list(PRECISIONS)}")
        if self.precision == "int8" and self.runtime not in ("auto", "onnxruntime"):
            raise MelnasError(f"latency_table.precision=int8 needs runtime=onnxruntime, not {self.runtime}")

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``latency_table_for`` / ``check_latency_table``."""
        return asdict(self)
