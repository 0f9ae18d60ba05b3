"""Classify new recordings with a trained ``model.pt``.

A file is cut into windows exactly as ``melnas-prepare`` cut the training data (the
feature and normalisation parameters travel in the model's ``data_meta``); the model
scores every window and the file's class probabilities are the mean of its windows'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from nas.data.errors import AudioDecodeError, SkipKind
from nas.data.features import FeatureParams, windows_from_file
from nas.io.model_file import TrainedModel


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


@torch.no_grad()
def window_probabilities(trained: TrainedModel, windows: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Softmax over classes for ``float32 [n, 1, n_mels, frames]`` windows: ``[n, classes]``."""
    if windows.ndim != 4 or tuple(windows.shape[1:3]) != tuple(trained.input_shape[:2]):
        raise ValueError(
            f"windows of shape {windows.shape} do not fit the model input {tuple(trained.input_shape)}"
        )
    device = next(trained.model.parameters()).device
    trained.model.eval()
    chunks = []
    for start in range(0, windows.shape[0], batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(windows[start : start + batch_size])).to(device)
        chunks.append(torch.softmax(trained.model(batch).float(), dim=1).cpu().numpy())
    return np.concatenate(chunks)


def predict_file(trained: TrainedModel, path: str | Path, *, batch_size: int = 64) -> FilePrediction:
    """Predict one file; a file that cannot be decoded gives a ``FilePrediction`` with ``error``."""
    if Path(path).is_dir():
        return FilePrediction(path=str(path), error=f"is a folder: pass its audio files ({Path(path) / '*.wav'})")
    try:
        windows = windows_from_file(path, trained.data_meta)
    except AudioDecodeError as error:
        reason = str(error)
        if error.kind in (SkipKind.SILENT, SkipKind.TOO_SHORT):
            reason += " (the data settings the model was trained with; they apply to its predictions too)"
        return FilePrediction(path=str(path), error=reason)
    probs = window_probabilities(trained, windows, batch_size=batch_size)
    params = FeatureParams.from_mapping(trained.data_meta)
    names = trained.class_names

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


def predict_files(trained: TrainedModel, paths: Iterable[str | Path], *, batch_size: int = 64) -> Iterator[FilePrediction]:
    """``predict_file`` for each path, in order (bad files included, with their reason)."""
    for path in paths:
        yield predict_file(trained, path, batch_size=batch_size)


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
