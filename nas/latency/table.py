"""The per-unit latency lookup table, its calibration, and its held-out error report.

A network's latency is predicted as the sum of the measured latencies of its
``space.layers(...)`` units, mapped through a linear calibration fitted on a few
whole networks (``Calibration``). Build tables with ``nas.latency.measure.latency_table_for``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from nas.io.atomic import atomic_write_json
from nas.io.lock import file_lock
from nas.latency.relative import time_in_turns
from search_spaces.base import Arch, InputShape, LayerCost, SearchSpace

TABLE_FORMAT = 1


class Measure(Protocol):
    """Times ``model`` at batch 1 on inputs of ``input_shape``; returns ms."""

    def __call__(self, model: nn.Module, input_shape: Sequence[int], *, num_inputs: int = 1) -> float: ...


@dataclass(frozen=True)
class TimedModel:
    """A module to time at batch 1 on ``num_inputs`` inputs of ``input_shape`` (no batch dim)."""

    model: nn.Module
    input_shape: tuple[int, ...]
    num_inputs: int = 1


class BatchMeasure(Protocol):
    """Times several models together; returns one figure (ms) per model, in order.

    A table hands all the models it needs at once (a new table's units, the calibration
    archs) so that they are timed under the same conditions
    (``nas.latency.measure.InterleavedTimer``)."""

    def __call__(self, models: Sequence[TimedModel]) -> list[float]: ...


def in_turns(measure: Measure, *, rounds: int = 1, combine: Callable[[list[float]], float] = min) -> BatchMeasure:
    """A one-model timing function (say, one that runs on a phone) as a table's
    ``BatchMeasure``: the models timed in turns, ``rounds`` times
    (``nas.latency.relative.time_in_turns``), each keeping ``combine`` of its readings."""

    def measure_batch(models: Sequence[TimedModel]) -> list[float]:
        if not models:
            return []
        readings = time_in_turns(
            list(models), lambda m: measure(m.model, m.input_shape, num_inputs=m.num_inputs), rounds
        )
        return [float(combine(r)) for r in readings]

    return measure_batch


@dataclass(frozen=True)
class Calibration:
    """``whole-model ms ~= scale * (sum of unit ms) + offset_ms``, fitted on measured archs.

    Isolated units miss what a whole network adds or saves: the per-call overhead
    of the network's own ``forward`` and the glue between units, and cache effects
    (a unit timed alone keeps its weights and input hot). A linear map fitted on a
    few whole-model measurements absorbs both. ``arch_hashes`` are the archs it was
    fitted on (kept out of held-out error reports); ``fit_error_pct`` is the median
    absolute error on them.
    """

    scale: float = 1.0
    offset_ms: float = 0.0
    arch_hashes: tuple[str, ...] = ()
    fit_error_pct: float | None = None

    def apply(self, unit_sum_ms: float) -> float:
        return self.scale * unit_sum_ms + self.offset_ms


def _fit_ratio(sums: np.ndarray, meas: np.ndarray) -> tuple[float, float]:
    """A pure scale: the median ratio measured / unit sum (robust to one noisy arch)."""
    return float(np.median(meas / sums)), 0.0


def _fit_linear(sums: np.ndarray, meas: np.ndarray) -> tuple[float, float]:
    """Scale and offset minimising the relative squared error, if physically plausible
    (see fit_calibration); else the pure scale."""
    design = np.stack([sums / meas, 1.0 / meas], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(design, np.ones_like(meas), rcond=None)
    if scale > 0 and 0 <= offset <= scale * sums.min():
        return float(scale), float(offset)
    return _fit_ratio(sums, meas)


def _leave_one_out_error(fit, sums: np.ndarray, meas: np.ndarray) -> float:
    """Median relative error of ``fit`` on each arch when fitted on all the others."""
    errors = []
    for i in range(sums.size):
        keep = np.arange(sums.size) != i
        scale, offset = fit(sums[keep], meas[keep])
        errors.append(abs(scale * sums[i] + offset - meas[i]) / meas[i])
    return float(np.median(errors))


def fit_calibration(unit_sums_ms: Sequence[float], measured_ms: Sequence[float]) -> tuple[float, float]:
    """The (scale, offset) of ``whole ~= scale * unit_sum + offset``, fitted on measured archs.

    Two candidate maps: a pure scale (median ratio), and scale + offset by least
    squares on *relative* residuals ``(scale * s + offset - m) / m`` (the error target
    is relative). The offset stands for what the network adds outside its units
    (its own ``forward``, glue), so it must be plausible: not negative (that would
    predict absurd, even negative, latencies for archs smaller than those calibrated
    on), and not more than the units cost in the smallest calibrated network (a
    near-flat fit to noise would erase the differences between archs that the
    search ranks by). With 4 or more archs the candidate with the smaller
    leave-one-out error wins (the simpler one on ties).
    """
    sums = np.asarray(unit_sums_ms, dtype=float)
    meas = np.asarray(measured_ms, dtype=float)
    if sums.shape != meas.shape or sums.size == 0 or np.any(sums <= 0) or np.any(meas <= 0):
        raise ValueError("calibration needs matching, positive unit sums and measurements")
    if sums.size < 4:
        return _fit_ratio(sums, meas)
    fits = (_fit_ratio, _fit_linear)
    best = min(fits, key=lambda fit: _leave_one_out_error(fit, sums, meas))
    return best(sums, meas)


class LatencyTable:
    """Per-unit latencies (ms) keyed by ``LayerCost.key``, for one measuring context.

    ``context`` is everything the latencies depend on (see
    ``nas.latency.measure.table_context``); the JSON file at ``path`` belongs to that one
    context. Unknown units are timed with ``measure`` on first use and the file is
    rewritten atomically (merged with what other processes wrote meanwhile), so a
    table is built once per machine and then only read. ``measure`` is
    ``nas.latency.measure.InterleavedTimer`` for a device, runtime and thread count, or
    any one-model timing function (``Measure``, e.g. one timing on a phone) wrapped by
    ``in_turns``.

    With ``net_of_call_overhead`` a unit's entry is its time minus that of a null call
    (``NullUnit``) on the same inputs: in ONNX Runtime or TorchScript a unit of a small
    network costs a few microseconds of compute, and each separate ``run()`` adds a fixed
    cost of the same order that a whole network pays once (summed raw over 8-12 units it
    overstated 0.1 ms networks by 1.6x, by a factor that grows with the unit count). The
    null-call times are kept in the table under ``call_overhead:`` keys.
    """

    def __init__(
        self,
        path: str | Path,
        context: Mapping[str, Any],
        *,
        measure: BatchMeasure,
        net_of_call_overhead: bool = False,
    ) -> None:
        self.path = Path(path)
        self.context = dict(context)
        self.measure = measure
        self.net_of_call_overhead = net_of_call_overhead
        self.units: dict[str, float] = {}
        self.calibration: Calibration | None = None
        if self.path.is_file():
            self._merge_from_disk()

    # ---- context ----
    @property
    def input_shape(self) -> InputShape:
        return tuple(self.context["input_shape"])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return int(self.context["num_classes"])

    # ---- persistence ----
    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"latency table {self.path} is unreadable ({err}); delete it to rebuild") from err
        if data.get("format") != TABLE_FORMAT or data.get("context") != self.context:
            raise ValueError(
                f"latency table {self.path} was made for another context or format; delete it to rebuild"
            )
        return data

    def _merge_from_disk(self) -> None:
        """Adopt the file's units over this process's own: the first value saved for a unit
        is the one every process (the ranks of a torchrun, a resumed run) predicts with."""
        data = self._read()
        self.units = {**self.units, **data.get("units", {})}
        if self.calibration is None and data.get("calibration"):
            cal = data["calibration"]
            self.calibration = Calibration(
                scale=float(cal["scale"]),
                offset_ms=float(cal["offset_ms"]),
                arch_hashes=tuple(cal.get("arch_hashes", ())),
                fit_error_pct=cal.get("fit_error_pct"),
            )

    def save(self) -> None:
        """Merge with the file on disk (under a lock) and replace it atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            if self.path.is_file():
                self._merge_from_disk()
            data = {
                "format": TABLE_FORMAT,
                "context": self.context,
                "calibration": None if self.calibration is None else asdict(self.calibration),
                "units": dict(sorted(self.units.items())),
            }
            atomic_write_json(self.path, data, indent=1, trailing_newline=False)

    # ---- measuring and predicting ----
    def measure_missing(self, layers: Sequence[LayerCost]) -> int:
        """Measure every unit whose key is not in the table yet; save; return how many.

        The missing units, and the null calls their overhead is measured with, are handed
        to ``measure`` together, so they are timed under the same conditions as each other.
        """
        missing = {u.key: u for u in layers if u.key not in self.units}
        if missing and self.path.is_file():  # another process may have measured them since
            self._merge_from_disk()
            missing = {key: unit for key, unit in missing.items() if key not in self.units}
        if not missing:
            return 0
        timed = {
            key: TimedModel(_build_quietly(unit.build), tuple(unit.input_shape), unit.num_inputs)
            for key, unit in missing.items()
        }
        if self.net_of_call_overhead:
            for unit in missing.values():
                key = _call_overhead_key(unit.input_shape, unit.num_inputs)
                if key not in self.units:
                    timed[key] = TimedModel(NullUnit(), tuple(unit.input_shape), unit.num_inputs)
        raw = dict(zip(timed, self.measure(list(timed.values()))))
        self.units.update({key: ms for key, ms in raw.items() if key.startswith(CALL_OVERHEAD)})
        for key, unit in missing.items():
            ms = raw[key]
            if self.net_of_call_overhead:
                # a floor keeps a unit that is all overhead (a tiny head) positive when noise says less
                overhead = self.units[_call_overhead_key(unit.input_shape, unit.num_inputs)]
                ms = max(ms - overhead, 0.1 * ms)
            self.units[key] = ms
        self.save()
        return len(missing)

    def unit_sum(self, layers: Sequence[LayerCost]) -> float:
        """Sum of the isolated unit latencies (ms), before calibration."""
        self.measure_missing(layers)
        return sum(self.units[u.key] for u in layers)

    def predict(self, layers: Sequence[LayerCost]) -> float:
        """Predicted whole-model latency (ms) of a network made of ``layers``."""
        total = self.unit_sum(layers)
        return total if self.calibration is None else self.calibration.apply(total)

    def layers_of(self, space: SearchSpace, arch: Arch) -> list[LayerCost]:
        if space.name != self.context["space"]:
            raise ValueError(f"latency table {self.path} is for space {self.context['space']!r}, not {space.name!r}")
        return space.layers(arch, num_classes=self.num_classes, input_shape=self.input_shape)

    def predict_arch(self, space: SearchSpace, arch: Arch) -> float:
        """Predicted latency (ms) of ``space.build(arch)`` in this table's context."""
        return self.predict(self.layers_of(space, arch))

    def measure_arch(self, space: SearchSpace, arch: Arch) -> float:
        """Measured latency (ms) of the standalone build of ``arch`` in this table's context."""
        return self.measure_archs(space, [arch])[0]

    def measure_archs(self, space: SearchSpace, archs: Sequence[Arch]) -> list[float]:
        """Measured latencies (ms) of the standalone builds of ``archs``, timed together."""
        models = [
            TimedModel(_build_quietly(lambda a=arch: space.build(a, num_classes=self.num_classes,
                                                                  input_shape=self.input_shape)),
                       tuple(self.input_shape))
            for arch in archs
        ]
        return self.measure(models)

    def calibrate(self, space: SearchSpace, archs: Sequence[Arch]) -> Calibration:
        """Fit and store the unit-sum -> whole-model map on ``archs`` (built and timed together).

        A fit whose median error exceeds ``CLEAN_FIT_PCT`` is timed again, up to
        ``CALIBRATION_ATTEMPTS`` timings in all, and the best fit is kept: the cached
        table's every later prediction rests on this one timing, and a burst of load from
        another process during it once gave a scale of 0.92 (fit error 6.9%) where quiet
        timings of the same space gave 1.02 (0.9-1.5%), and 70% of held-out archs within
        +-10% instead of 97-100%.
        """
        if not archs:
            raise ValueError("calibration needs at least one arch")
        prefill(self, space, archs)
        sums = [self.unit_sum(self.layers_of(space, a)) for a in archs]
        fits: list[tuple[float, Calibration]] = []  # (median fit error %, the fit)
        while len(fits) < CALIBRATION_ATTEMPTS and min((e for e, _ in fits), default=math.inf) > CLEAN_FIT_PCT:
            measured = self.measure_archs(space, archs)
            scale, offset = fit_calibration(sums, measured)
            error = float(np.median([abs(scale * s + offset - m) / m * 100 for s, m in zip(sums, measured)]))
            fits.append((error, Calibration(scale=scale, offset_ms=offset, arch_hashes=tuple(a.hash for a in archs),
                                            fit_error_pct=error)))
        self.calibration = min(fits, key=lambda fit: fit[0])[1]
        self.save()
        return self.calibration


CALL_OVERHEAD = "call_overhead:"
CALIBRATION_ATTEMPTS = 3  # timings of the calibration archs at most (see LatencyTable.calibrate)
CLEAN_FIT_PCT = 3.0  # a median fit error above this is taken for interference and timed again


def _call_overhead_key(input_shape: Sequence[int], num_inputs: int) -> str:
    return f"{CALL_OVERHEAD}{'x'.join(map(str, input_shape))}:{num_inputs}"


class NullUnit(nn.Module):
    """The least work a unit can do with its inputs: a ReLU of their sum (a runtime call's
    fixed cost, input and output copies included)."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.relu(sum(inputs[1:], inputs[0]))


def _build_quietly(factory: Callable[[], nn.Module]) -> nn.Module:
    """Build a module without drawing from the caller's global torch RNG.

    Weight init draws random numbers; a search that measures a new unit mid-run must
    continue exactly as one that found the unit already in the table (resume).
    """
    with torch.random.fork_rng(devices=[]):
        return factory()


# ---- held-out error report (melnas-latency) ----------------------------------------


def spanning_archs(table: LatencyTable, space: SearchSpace, n: int, *, seed: int, pool_factor: int = 5) -> list[Arch]:
    """``n`` archs spread evenly over the predicted cost range of ``pool_factor * n`` random ones.

    A calibration on archs of similar cost cannot tell a slope from an offset; spread
    ones can. The pool's missing units are measured first, in one batch.
    """
    if n < 1:
        raise ValueError(f"need at least one calibration arch, got {n}")
    rng = np.random.default_rng(seed)
    pool = {a.hash: a for a in (space.random_arch(rng) for _ in range(pool_factor * n))}
    prefill(table, space, list(pool.values()))
    ranked = sorted(pool.values(), key=lambda a: (table.unit_sum(table.layers_of(space, a)), a.hash))
    picks = sorted({int(round(i)) for i in np.linspace(0, len(ranked) - 1, min(n, len(ranked)))})
    return [ranked[i] for i in picks]


def prefill(table: LatencyTable, space: SearchSpace, archs: Sequence[Arch]) -> int:
    """Measure the missing units of all ``archs`` in one batch (timed together, not arch by
    arch); return how many were new."""
    return table.measure_missing([unit for arch in archs for unit in table.layers_of(space, arch)])
