"""Inference latency: measured on a real forward pass, or predicted from a per-unit table.

``measure_latency`` times a module at batch 1 (eval mode, no autograd, a fixed
number of CPU threads, warm-up, median of repeats; CUDA synchronised per call).
Prediction sums the measured latencies of an arch's ``space.layers(...)`` units
and applies a linear calibration fitted on whole-model measurements; see
``nas.latency_table``. This module is the public entry point for both.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from search_spaces.base import Arch, Categorical, InputShape, LayerCost, SearchSpace


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available; use cpu or auto")
    return resolved


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op CPU threads, then restore the previous count."""
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    device: str | torch.device = "cpu",
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    num_inputs: int = 1,
) -> float:
    """Median wall time in ms of ``model(x)`` at batch 1; ``input_shape`` excludes the batch.

    The model is moved to ``device`` and run in eval mode under ``torch.no_grad()``
    (its training flag is restored afterwards). ``num_inputs`` > 1 calls
    ``model(x_1, ..., x_n)`` with that many distinct random inputs of ``input_shape``.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    if num_inputs < 1:
        raise ValueError(f"num_inputs must be >= 1, got {num_inputs}")
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"input_shape must be positive sizes without the batch dim, got {input_shape}")
    dev = resolve_device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    was_training = model.training
    model.to(dev).eval()
    times: list[float] = []
    try:
        with torch_threads(threads), torch.no_grad():
            inputs = [torch.randn((1, *shape), device=dev) for _ in range(num_inputs)]
            for _ in range(warmup):
                model(*inputs)
            sync()
            for _ in range(repeats):
                start = time.perf_counter()
                model(*inputs)
                sync()
                times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return 1000.0 * statistics.median(times)



# ---- the per-unit lookup table ------------------------------------------------------

TABLE_FORMAT = 1


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


def space_fingerprint(space: SearchSpace, *, num_classes: int, input_shape: InputShape) -> str:
    """A hash of what a space is, without knowing its constructor arguments.

    The decisions (names and options) plus the unit keys of a reference arch (first
    option everywhere, no skips) change whenever a config change (widths, depth,
    strides, ...) changes the networks the space builds.
    """
    reference = space.arch(
        [d.options[0] if isinstance(d, Categorical) else () for d in space.decisions]
    )
    keys = [u.key for u in space.layers(reference, num_classes=num_classes, input_shape=input_shape)]
    decisions = [
        [d.name, list(d.options)] if isinstance(d, Categorical) else [d.name, d.num_inputs]
        for d in space.decisions
    ]
    blob = json.dumps({"decisions": decisions, "reference_units": keys}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


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


def fit_calibration(unit_sums_ms: Sequence[float], measured_ms: Sequence[float]) -> tuple[float, float]:
    """Least-squares (scale, offset) minimising the *relative* error of the prediction.

    Relative residuals ``(scale * s + offset - m) / m`` are what the error target is
    stated in. With fewer than 3 archs, or unit sums too alike to separate a slope
    from an offset, only the scale is fitted.
    """
    sums = np.asarray(unit_sums_ms, dtype=float)
    meas = np.asarray(measured_ms, dtype=float)
    if sums.shape != meas.shape or sums.size == 0 or np.any(sums <= 0) or np.any(meas <= 0):
        raise ValueError("calibration needs matching, positive unit sums and measurements")
    if sums.size >= 3 and sums.max() / sums.min() > 1.25:
        design = np.stack([sums / meas, 1.0 / meas], axis=1)
        (scale, offset), *_ = np.linalg.lstsq(design, np.ones_like(meas), rcond=None)
        if scale > 0 and np.all(scale * sums + offset > 0):
            return float(scale), float(offset)
    return float(np.median(meas / sums)), 0.0


class LatencyTable:
    """Per-unit latencies (ms) keyed by ``LayerCost.key``, for one measuring context.

    A context is (space + its fingerprint, input shape, num classes, device and its
    hardware name, threads, torch version); each context has its own JSON file under
    the cache dir. Unknown units are measured on first use and the file is rewritten
    atomically (merged with what other processes wrote meanwhile), so a table is
    built once per machine and then only read.
    """

    def __init__(
        self,
        path: str | Path,
        context: Mapping[str, Any],
        *,
        warmup: int = 10,
        repeats: int = 50,
    ) -> None:
        self.path = Path(path)
        self.context = dict(context)
        self.warmup = warmup
        self.repeats = repeats
        self.units: dict[str, float] = {}
        self.calibration: Calibration | None = None
        if self.path.is_file():
            self._merge_from_disk()

    # ---- context ----
    @property
    def device(self) -> str:
        return str(self.context["device"])

    @property
    def threads(self) -> int:
        return int(self.context["threads"])

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
        data = self._read()
        self.units = {**data.get("units", {}), **self.units}
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
        with _file_lock(self.path.with_name(self.path.name + ".lock")):
            if self.path.is_file():
                self._merge_from_disk()
            data = {
                "format": TABLE_FORMAT,
                "context": self.context,
                "calibration": None if self.calibration is None else asdict(self.calibration),
                "units": dict(sorted(self.units.items())),
            }
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(data, fh, indent=1)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    # ---- measuring and predicting ----
    def measure_missing(self, layers: Sequence[LayerCost]) -> int:
        """Measure every unit whose key is not in the table yet; save; return how many."""
        missing = {u.key: u for u in layers if u.key not in self.units}
        for key, unit in missing.items():
            self.units[key] = measure_latency(
                unit.build(),
                unit.input_shape,
                device=self.device,
                threads=self.threads,
                warmup=self.warmup,
                repeats=self.repeats,
                num_inputs=unit.num_inputs,
            )
        if missing:
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
        model = space.build(arch, num_classes=self.num_classes, input_shape=self.input_shape)
        return measure_latency(
            model, self.input_shape, device=self.device, threads=self.threads,
            warmup=self.warmup, repeats=self.repeats,
        )

    def calibrate(self, space: SearchSpace, archs: Sequence[Arch]) -> Calibration:
        """Fit and store the unit-sum -> whole-model map on ``archs`` (each built and timed)."""
        if not archs:
            raise ValueError("calibration needs at least one arch")
        sums = [self.unit_sum(self.layers_of(space, a)) for a in archs]
        measured = [self.measure_arch(space, a) for a in archs]
        scale, offset = fit_calibration(sums, measured)
        errors = [abs(scale * s + offset - m) / m * 100 for s, m in zip(sums, measured)]
        self.calibration = Calibration(
            scale=scale,
            offset_ms=offset,
            arch_hashes=tuple(a.hash for a in archs),
            fit_error_pct=float(np.median(errors)),
        )
        self.save()
        return self.calibration


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX); elsewhere atomic replacement alone guards the file."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; a lost update only means re-measuring a unit
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def table_context(
    space: SearchSpace, *, num_classes: int, input_shape: InputShape, device: torch.device, threads: int
) -> dict[str, Any]:
    """Everything a unit latency depends on; a table file belongs to exactly one context."""
    return {
        "space": space.name,
        "space_fingerprint": space_fingerprint(space, num_classes=num_classes, input_shape=input_shape),
        "input_shape": [int(s) for s in input_shape],
        "num_classes": int(num_classes),
        "device": str(device),
        "hardware": hardware_name(device),
        "threads": int(threads),
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
    seed: int = 0,
    warmup: int = 10,
    repeats: int = 50,
) -> LatencyTable:
    """The table of this machine for ``space`` at this input: loaded, or built and calibrated.

    A new table is calibrated on ``calibration_archs`` random archs (drawn with
    ``seed``), which also fills it with their units; 0 leaves it uncalibrated
    (predictions are then raw unit sums). Later calls only read the file.
    """
    dev = resolve_device(device)
    context = table_context(space, num_classes=num_classes, input_shape=input_shape, device=dev, threads=threads)
    digest = hashlib.sha1(json.dumps(context, sort_keys=True).encode()).hexdigest()[:12]
    name = f"{space.name}-{dev.type}-{threads}t-{'x'.join(map(str, input_shape))}-{digest}.json"
    table = LatencyTable(
        Path(cache_dir or default_cache_dir()).expanduser() / name, context, warmup=warmup, repeats=repeats
    )
    if table.calibration is None and calibration_archs > 0:
        rng = np.random.default_rng(seed)
        table.calibrate(space, [space.random_arch(rng) for _ in range(calibration_archs)])
    return table


# ---- held-out error report (melnas-latency) ----------------------------------------


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
    table_path: Path
    calibration: Calibration | None
    rows: tuple[ArchLatency, ...]

    @property
    def median_abs_error_pct(self) -> float:
        return float(np.median([abs(r.error_pct) for r in self.rows]))

    @property
    def max_abs_error_pct(self) -> float:
        return float(max(abs(r.error_pct) for r in self.rows))


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
    table: LatencyTable, space: SearchSpace, archs: Sequence[Arch], *, progress: Callable[[ArchLatency], None] | None = None
) -> PredictionReport:
    """Predict, then measure whole, each arch; ``progress`` is called with each row."""
    rows = []
    for arch in archs:
        row = ArchLatency(
            arch_string=space.arch_string(arch),
            hash=arch.hash,
            predicted_ms=table.predict_arch(space, arch),
            measured_ms=table.measure_arch(space, arch),
        )
        rows.append(row)
        if progress is not None:
            progress(row)
    return PredictionReport(table_path=table.path, calibration=table.calibration, rows=tuple(rows))
