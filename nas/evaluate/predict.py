"""Classify new recordings with a trained ``model.pt`` or an exported ONNX file.

A file is cut into windows exactly as ``melnas-prepare`` cut the training data (the
feature and normalisation parameters travel in the model's ``data_meta``, in ``model.pt``
and in the ONNX file's metadata alike); the model scores every window and the file's
class probabilities are the mean of its windows'. An ONNX file (fp32 or int8) is run in
ONNX Runtime, so what is predicted is what the shipped file computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from nas.data.errors import AudioDecodeError, SkipKind
from nas.data.features import FeatureParams, windows_from_file
from nas.io.model_file import TrainedModel, load_model


@dataclass
class WindowPrediction:
    start_seconds: float
    end_seconds: float
    probabilities: dict[str, float]

    @property
    def label(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)


@dataclass
class FilePrediction:
    """The prediction for one file, or the reason it could not be read (``error``)."""

    path: str
    probabilities: dict[str, float] = field(default_factory=dict)  # class -> mean window probability
    windows: list[WindowPrediction] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str | None:
        if not self.probabilities:
            return None
        return max(self.probabilities, key=self.probabilities.__getitem__)

    def to_json_dict(self, *, windows: bool) -> dict[str, Any]:
        if not self.ok:
            return {"path": self.path, "error": self.error}
        out: dict[str, Any] = {"path": self.path, "label": self.label, "probabilities": self.probabilities,
                               "num_windows": len(self.windows)}
        if windows:
            out["windows"] = [
                {"start_seconds": w.start_seconds, "end_seconds": w.end_seconds, "label": w.label,
                 "probabilities": w.probabilities}
                for w in self.windows
            ]
        return out


@dataclass(frozen=True)
class Classifier:
    """What predicting needs of a model, whatever runs it: its classes, the data settings it
    was trained with (``data_meta``: features, normalisation) and its input shape, and a
    function from windows ``float32 [n, 1, n_mels, frames]`` to logits ``[n, classes]``."""

    class_names: list[str]
    data_meta: dict[str, Any]
    input_shape: tuple[int, int, int]
    logits: Callable[[np.ndarray], np.ndarray]

    def window_probabilities(self, windows: np.ndarray) -> np.ndarray:
        """Softmax over classes for each window: ``[n, classes]``."""
        if windows.ndim != 4 or tuple(windows.shape[1:3]) != tuple(self.input_shape[:2]):
            raise ValueError(f"windows of shape {windows.shape} do not fit the model input {tuple(self.input_shape)}")
        logits = self.logits(windows).astype(np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return probs / probs.sum(axis=1, keepdims=True)


def torch_classifier(trained: TrainedModel, *, batch_size: int = 64) -> Classifier:
    """A ``model.pt`` (``load_model``), run in torch on its device in batches of ``batch_size``."""

    @torch.no_grad()
    def logits(windows: np.ndarray) -> np.ndarray:
        device = next(trained.model.parameters()).device
        trained.model.eval()
        return np.concatenate([
            trained.model(torch.from_numpy(np.ascontiguousarray(windows[i : i + batch_size])).to(device)).float().cpu().numpy()
            for i in range(0, windows.shape[0], batch_size)
        ])

    return Classifier(list(trained.class_names), dict(trained.data_meta), tuple(trained.input_shape), logits)


def onnx_classifier(path: str | Path, *, batch_size: int = 64) -> Classifier:
    """An ONNX file written by ``melnas-export`` (fp32 or int8), run in ONNX Runtime."""
    from nas.evaluate.quantized import OnnxClassifier

    model = OnnxClassifier(path)
    return Classifier(model.class_names, dict(model.meta["data_meta"]), model.input_shape,
                      lambda windows: model.logits(windows, batch_size=batch_size))


def load_classifier(path: str | Path, *, device: torch.device = torch.device("cpu"), batch_size: int = 64) -> Classifier:
    """``torch_classifier`` for a ``model.pt``, ``onnx_classifier`` for a ``.onnx`` file."""
    if Path(path).suffix.lower() == ".onnx":
        return onnx_classifier(path, batch_size=batch_size)
    return torch_classifier(load_model(path, device=device), batch_size=batch_size)


def predict_file(classifier: Classifier, path: str | Path) -> FilePrediction:
    """Predict one file; a file that cannot be decoded gives a ``FilePrediction`` with ``error``."""
    if Path(path).is_dir():
        return FilePrediction(path=str(path), error=f"is a folder: pass its audio files ({Path(path) / '*.wav'})")
    try:
        windows = windows_from_file(path, classifier.data_meta)
    except AudioDecodeError as error:
        reason = str(error)
        if error.kind in (SkipKind.SILENT, SkipKind.TOO_SHORT):
            reason += " (the data settings the model was trained with; they apply to its predictions too)"
        return FilePrediction(path=str(path), error=reason)
    probs = classifier.window_probabilities(windows)
    params = FeatureParams.from_mapping(classifier.data_meta)
    names = classifier.class_names

    def as_dict(row: np.ndarray) -> dict[str, float]:
        return {name: float(p) for name, p in zip(names, row)}

    return FilePrediction(
        path=str(path),
        probabilities=as_dict(probs.mean(axis=0)),
        windows=[
            WindowPrediction(
                start_seconds=i * params.hop_samples / params.sample_rate,
                end_seconds=(i * params.hop_samples + params.window_samples) / params.sample_rate,
                probabilities=as_dict(row),
            )
            for i, row in enumerate(probs)
        ],
    )


def predict_files(classifier: Classifier, paths: Iterable[str | Path]) -> Iterator[FilePrediction]:
    """``predict_file`` for each path, in order (bad files included, with their reason)."""
    for path in paths:
        yield predict_file(classifier, path)


def format_prediction(prediction: FilePrediction, *, top_k: int = 3, windows: bool = False) -> str:
    """Human-readable lines: the top-k classes of the file (and of each window)."""

    def top(probabilities: dict[str, float]) -> str:
        best = sorted(probabilities.items(), key=lambda item: -item[1])[:top_k]
        return ", ".join(f"{name} {p:.3f}" for name, p in best)

    lines = [f"{prediction.path}: {prediction.label}  ({top(prediction.probabilities)}; "
             f"{len(prediction.windows)} windows)"]
    if windows:
        lines += [
            f"  {w.start_seconds:8.2f}-{w.end_seconds:<8.2f} {w.label}  ({top(w.probabilities)})"
            for w in prediction.windows
        ]
    return "\n".join(lines)
