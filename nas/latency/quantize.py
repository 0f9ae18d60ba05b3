"""Static int8 quantization of an ONNX model with ONNX Runtime's tooling.

QDQ format (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into int8
kernels, and that other runtimes read too), per-channel int8 weights, uint8
activations (U8S8: the fast path of ONNX Runtime's x86 int8 kernels). Activation ranges
come from calibration inputs: for a trained model, windows of its own train split
(``nas.evaluate.quantized``); for latency units, the timing inputs (ranges do not
change the speed).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class _Feeds:
    """``onnxruntime.quantization.CalibrationDataReader`` over a list of input dicts."""

    def __init__(self, feeds: Iterable[Mapping[str, np.ndarray]]) -> None:
        self._feeds = iter([dict(f) for f in feeds])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_onnx(
    source: str | Path, target: str | Path, feeds: Iterable[Mapping[str, np.ndarray]], *, method: str = "minmax"
) -> Path:
    """Write the static int8 quantization of the ONNX file ``source`` to ``target``;
    ``feeds`` are the calibration inputs (dicts input name -> array)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ValueError(f"calibration method {method!r} is not one of {list(CALIBRATION_METHODS)}")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # ONNX Runtime's recommended pre-processing: shape inference and basic graph
    # optimisation (folded batch-norm biases become initializers); without it the biases
    # stay float and every convolution runs in float between Q/DQ pairs (2x slower).
    prepared = target.with_name(target.stem + ".pre.onnx")
    with _quiet_logging():
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(target), _Feeds(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=methods[method],
        )
    prepared.unlink()
    return target


@contextmanager
def _quiet_logging() -> Iterator[None]:
    """ONNX Runtime's quantization tooling warns on the root logger (advice already followed)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
