"""Export a trained ``model.pt`` to TorchScript, and to ONNX when ``onnx`` is installed.

Every export is checked: the exported model's outputs must equal the PyTorch model's
on random inputs (batch 2, the trained input shape). Whether the export also accepts a
longer clip (twice the frames: the networks end in global pooling) is checked and
reported, not required. The class names, input shape and feature parameters travel
inside each file (TorchScript extra file ``melnas.json``; ONNX metadata), so a
deployment needs nothing else to turn audio into model input.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from nas.evaluate.cost import count_macs, count_params
from nas.io.model_file import TrainedModel

TOLERANCE = 1e-4  # max absolute difference of logits between the export and PyTorch
INPUT_NAME, OUTPUT_NAME = "logmel", "logits"


class OnnxUnavailable(RuntimeError):
    """ONNX export needs the optional ``onnx`` package."""


@dataclass(frozen=True)
class ExportCheck:
    path: Path
    max_abs_diff: float  # on batch 2 of the trained input shape
    variable_length: bool  # also matches PyTorch on a clip with twice the frames
    verified_by: str  # what ran the exported file for the check


def export_metadata(trained: TrainedModel) -> dict[str, Any]:
    """What a deployment needs besides the weights (classes, input shape, feature params),
    and what ``melnas-eval`` and ``melnas-compare`` report of an exported file (the float
    network's params and MACs, its hash and origin)."""
    model = trained.model.cpu().eval()
    return {
        "class_names": trained.class_names,
        "input_shape": list(trained.input_shape),
        "data_meta": trained.data_meta,
        "arch": trained.arch.to_json_dict(),
        "arch_string": trained.arch_string,
        "space_config": trained.space_config,
        "input": f"{INPUT_NAME}: float32 [batch, {', '.join(map(str, trained.input_shape))}] normalised log-mel",
        "output": f"{OUTPUT_NAME}: float32 [batch, {trained.num_classes}] (softmax for probabilities)",
        "params": count_params(model),
        "macs": count_macs(model, trained.input_shape),
        "arch_hash": trained.network_hash,
        "origin": trained.info.get("origin", "unknown"),
    }


def _sample_inputs(trained: TrainedModel, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    channels, mels, frames = trained.input_shape
    same = torch.randn(2, channels, mels, frames, generator=generator)
    longer = torch.randn(1, channels, mels, 2 * frames, generator=generator)
    return same, longer


def _compare(run: Callable[[torch.Tensor], np.ndarray], model: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        expected = model(x).numpy()
    try:
        got = run(x)
    except Exception:  # noqa: BLE001 - a fixed-shape export may reject another shape in many ways
        return float("inf")
    if got.shape != expected.shape:
        return float("inf")
    return float(np.abs(got - expected).max())


def export_torchscript(trained: TrainedModel, path: str | Path) -> ExportCheck:
    """Trace the model (eval mode, CPU), save it, reload the file and check its outputs."""
    path = Path(path)
    model = trained.model.cpu().eval()
    same, longer = _sample_inputs(trained)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # Recent torch releases flag TorchScript as deprecated in favour of torch.export; it is
        # still what C++/mobile runtimes load, so melnas exports it deliberately.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, same[:1], check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"melnas.json": json.dumps(export_metadata(trained))})
        loaded = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x).numpy()

    diff = _compare(run, model, same)
    if not diff <= TOLERANCE:
        raise RuntimeError(f"the TorchScript export {path} differs from the model by {diff:.3g} (> {TOLERANCE})")
    return ExportCheck(path, diff, _compare(run, model, longer) <= TOLERANCE, "torch.jit.load")


def export_onnx(trained: TrainedModel, path: str | Path, *, opset: int = 17) -> ExportCheck:
    """Export with a dynamic batch and frame axis; check with onnx's checker and, when
    onnxruntime is installed, numerically against PyTorch."""
    try:
        import onnx
    except ImportError as err:
        raise OnnxUnavailable(
            "ONNX export needs the optional onnx package: pip install 'melnas[onnx]' "
            "(add onnxruntime to also check the exported outputs numerically)"
        ) from err
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = trained.model.cpu().eval()
    same, longer = _sample_inputs(trained)
    with warnings.catch_warnings():
        # The TorchScript-based exporter needs only `onnx`; the newer torch.export-based
        # one would also need onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (same[:1],),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 3: "frames"}, OUTPUT_NAME: {0: "batch"}},
        )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    for key, value in export_metadata(trained).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(proto, str(path))
    try:
        import onnxruntime
    except ImportError:
        return ExportCheck(path, float("nan"), False, "onnx.checker only (onnxruntime not installed)")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> np.ndarray:
        return session.run(None, {INPUT_NAME: x.numpy()})[0]

    diff = _compare(run, model, same)
    if not diff <= TOLERANCE:
        raise RuntimeError(f"the ONNX export {path} differs from the model by {diff:.3g} (> {TOLERANCE})")
    return ExportCheck(path, diff, _compare(run, model, longer) <= TOLERANCE, "onnxruntime")
