"""int8 deployment: a trained model as a statically quantized ONNX file, and that file as a
classifier (``melnas-export --int8``, ``melnas-eval model=<file>.onnx``).

Calibration uses windows of the train split of the model's own cache (never test
windows), drawn at random with a seed; the method is MinMax by default (see
``nas.latency.quantize``; ``benchmarks/bench_runtimes.py`` compares it with Entropy and
Percentile on accuracy). The export is checked: the file must load and run in ONNX
Runtime, and its top-1 class must agree with the float model's on the test windows.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.data.dataset import PreparedData, make_loader, open_prepared
from nas.evaluate.export import INPUT_NAME, export_onnx
from nas.io.model_file import TrainedModel
from nas.latency.quantize import quantize_onnx
from nas.latency.runtimes import OnnxRuntime

# MinMax ranges from 256 windows cost MobileNetV3-Small of the demo up to 1.05 points of test
# accuracy (two draws: -1.05, -0.79); from 1024, -0.53 and -0.26, and the demo's two searched
# winners stayed within 0.8 points either way (benchmarks/bench_runtimes.py, README).
CALIBRATION_WINDOWS = 1024
CALIBRATION_BATCH = 32


@dataclass(frozen=True)
class Int8Check:
    path: Path
    method: str
    calibration_windows: int
    agreement: float  # share of test windows where int8 and float predict the same class
    checked_windows: int


def model_windows(data: PreparedData, split: str, count: int | None, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` (all if None) normalised model-input windows of ``split`` and their
    labels; a random subset, drawn with ``seed``, when ``count`` is smaller than the split."""
    loader = make_loader(data, split, batch_size=256, shuffle=count is not None, seed=seed)
    xs, ys, seen = [], [], 0
    for x, y in loader:
        xs.append(x.numpy())
        ys.append(y.numpy())
        seen += len(y)
        if count is not None and seen >= count:
            break
    if not xs:
        raise ValueError(f"the {split} split of {data.cache_dir} is empty")
    return np.concatenate(xs)[:count], np.concatenate(ys)[:count]


def _set_metadata(path: Path, extra: dict[str, Any], base: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in {**base, **{k: json.dumps(v) for k, v in extra.items()}}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def onnx_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def export_int8(
    trained: TrainedModel, path: str | Path, *, cache_dir: str | Path | None = None, method: str = "minmax",
    calibration_windows: int = CALIBRATION_WINDOWS, check_windows: int | None = None, seed: int = 0,
) -> Int8Check:
    """Export ``trained`` to ONNX, quantize it statically (QDQ, per-channel int8 weights)
    with ``calibration_windows`` train windows of its cache, write ``path`` and check it."""
    cache_dir = cache_dir or trained.data_meta.get("cache_dir")
    if not cache_dir:
        raise ValueError("the model records no data cache: pass the cache (--cache) to calibrate int8 on")
    data = open_prepared(cache_dir)
    path = Path(path)
    calibration, _ = model_windows(data, "train", calibration_windows, seed=seed)
    # equal batches: ONNX Runtime's histogram calibrators (entropy, percentile) fail on a short last one
    batch = min(CALIBRATION_BATCH, len(calibration))
    calibration = calibration[: len(calibration) // batch * batch]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(trained, fp32)
        base = onnx_metadata(fp32)
        quantize_onnx(fp32, path, ({INPUT_NAME: calibration[i : i + batch]} for i in range(0, len(calibration), batch)),
                      method=method)
    model = trained.model.cpu().eval()
    _set_metadata(path, {"precision": "int8", "calibration": {"method": method, "windows": len(calibration),
                         "split": "train", "seed": seed}}, base)
    windows, _ = model_windows(data, "test", check_windows, seed=seed)
    quantized = OnnxClassifier(path)
    with torch.no_grad():
        expected = model(torch.from_numpy(windows)).argmax(1).numpy()
    agreement = float(np.mean(quantized.logits(windows).argmax(1) == expected))
    return Int8Check(path, method, len(calibration), agreement, len(windows))


class OnnxClassifier:
    """An exported ONNX model file (float or int8) with the metadata melnas wrote into it."""

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        self.path = Path(path)
        self.bytes = self.path.read_bytes()
        meta = onnx_metadata(self.path)
        if "class_names" not in meta:
            raise ValueError(f"{path} has no melnas metadata: export it with melnas-export")
        self.meta = {k: _maybe_json(v) for k, v in meta.items()}
        self.precision = str(self.meta.get("precision", "fp32"))
        self.session = OnnxRuntime(precision=self.precision).session(self.bytes, threads=threads)

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["input_shape"])  # type: ignore[return-value]

    def logits(self, windows: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        return np.concatenate([
            self.session.run(None, {INPUT_NAME: windows[i : i + batch_size].astype(np.float32)})[0]
            for i in range(0, len(windows), batch_size)
        ])


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
