"""The held-out error report of a latency table (``melnas-latency``): predicted vs
measured latency of random archs the table was not calibrated on."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import kendalltau

from nas.latency.table import Calibration, LatencyTable, prefill
from search_spaces.base import Arch, SearchSpace


@dataclass(frozen=True)
class ArchLatency:
    arch_string: str
    hash: str
    predicted_ms: float
    measured_ms: float

    @property
    def error_pct(self) -> float:
        """Signed error of the prediction, in % of the measured latency."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms * 100.0


@dataclass(frozen=True)
class PredictionReport:
    """Predicted vs measured latency of archs the table was not calibrated on."""

    table_path: Path
    context: dict[str, Any]
    calibration: Calibration | None
    rows: tuple[ArchLatency, ...]

    @property
    def median_abs_error_pct(self) -> float:
        return float(np.median([abs(r.error_pct) for r in self.rows]))

    @property
    def max_abs_error_pct(self) -> float:
        return float(max(abs(r.error_pct) for r in self.rows))

    def share_within(self, pct: float) -> float:
        """The share of archs predicted within +-``pct`` % of their measured latency."""
        return float(np.mean([abs(r.error_pct) <= pct for r in self.rows]))

    @property
    def kendall_tau(self) -> float:
        """Rank agreement of predicted and measured latency (1 = same order; what a
        search's ranking of archs sees, even when load shifts the absolute scale)."""
        return float(kendalltau([r.predicted_ms for r in self.rows], [r.measured_ms for r in self.rows]).statistic)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "table": str(self.table_path),
            "context": self.context,
            "calibration": None if self.calibration is None else asdict(self.calibration),
            "median_abs_error_pct": self.median_abs_error_pct,
            "max_abs_error_pct": self.max_abs_error_pct,
            "kendall_tau": self.kendall_tau,
            "share_within_10pct": self.share_within(10.0),
            "archs": [{**asdict(r), "error_pct": r.error_pct} for r in self.rows],
        }


def held_out_archs(space: SearchSpace, table: LatencyTable, num_archs: int, *, seed: int) -> list[Arch]:
    """``num_archs`` distinct random archs, none of them one the table was calibrated on."""
    if num_archs < 1:
        raise ValueError(f"num_archs must be >= 1, got {num_archs}")
    taken = set(table.calibration.arch_hashes if table.calibration else ())
    rng = np.random.default_rng(seed)
    archs: list[Arch] = []
    for _ in range(100 * num_archs):
        arch = space.random_arch(rng)
        if arch.hash not in taken:
            taken.add(arch.hash)
            archs.append(arch)
            if len(archs) == num_archs:
                return archs
    raise ValueError(f"space {space.name!r} has too few distinct archs to hold out {num_archs}")


def evaluate_predictions(
    table: LatencyTable, space: SearchSpace, archs: Sequence[Arch], *,
    progress: Callable[[ArchLatency], None] | None = None,
) -> PredictionReport:
    """Predict, then measure whole (all together: ``LatencyTable.measure_archs``), each
    arch; ``progress`` is called with each row."""
    rows = []
    prefill(table, space, archs)
    predicted = [table.predict_arch(space, arch) for arch in archs]
    measured = table.measure_archs(space, archs)
    for arch, predicted_ms, measured_ms in zip(archs, predicted, measured):
        row = ArchLatency(
            arch_string=space.arch_string(arch), hash=arch.hash, predicted_ms=predicted_ms, measured_ms=measured_ms,
        )
        rows.append(row)
        if progress is not None:
            progress(row)
    return PredictionReport(
        table_path=table.path, context=table.context, calibration=table.calibration, rows=tuple(rows)
    )
