"""Evaluate a trained model: classification metrics (scikit-learn), cost and measured latency.

``evaluate_model`` is what ``melnas-eval`` and the end of ``melnas-train`` call; it
returns the ``metrics.json`` dict and ``write_report`` puts it on disk together with
the confusion matrix as a PNG and the per-class table as CSV.
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)
from torch import nn
from torch.utils.data import DataLoader

from nas.data.dataset import PreparedData, make_loader, open_prepared
from nas.evaluate.cost import count_macs, count_params
from nas.io.model_file import TrainedModel, load_model
from nas.latency.measure import LatencySettings, measure_latency
from nas.runtime import resolve_device


@torch.no_grad()
def predict_probabilities(model: nn.Module, loader: DataLoader, *, device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` over ``loader``: returns (labels ``[N]`` int64, probabilities ``[N, classes]``)."""
    model.eval()
    labels: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    for x, y in loader:
        logits = model(x.to(device, non_blocking=True))
        probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        labels.append(y.numpy())
    if not labels:
        raise ValueError("the loader yielded no batches: the split is empty")
    return np.concatenate(labels), np.concatenate(probs)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, a per-class table and the confusion matrix.

    Macro averages run over the classes present in ``y_true`` or ``y_pred`` (scikit-learn's
    default); a class that is never predicted counts with precision 0, not as an error.
    The confusion matrix has rows = true class, columns = predicted class, over all classes.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"need two equal-length 1-D label arrays, got {y_true.shape} and {y_pred.shape}")
    labels = list(range(len(class_names)))
    if y_true.max() >= len(labels) or y_pred.max() >= len(labels) or min(y_true.min(), y_pred.min()) < 0:
        raise ValueError(f"labels must lie in [0, {len(labels)}) for {len(labels)} class names")
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    per_p, per_r, per_f, per_support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    per_class = [
        {
            "class": name,
            "precision": float(per_p[i]),
            "recall": float(per_r[i]),
            "f1": float(per_f[i]),
            "support": int(per_support[i]),
        }
        for i, name in enumerate(class_names)
    ]
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def recording_accuracy(y_true: np.ndarray, probs: np.ndarray, sources: np.ndarray) -> float:
    """Accuracy per source recording: window probabilities averaged over each recording
    (what ``melnas-predict`` reports for a file), argmax, compared with its label."""
    if not len(y_true) == len(probs) == len(sources):
        raise ValueError("labels, probabilities and sources need one row per window")
    names, group = np.unique(sources, return_inverse=True)
    mean_probs = np.zeros((len(names), probs.shape[1]))
    np.add.at(mean_probs, group, probs)
    labels = np.zeros(len(names), dtype=np.int64)
    labels[group] = y_true
    return float(accuracy_score(labels, mean_probs.argmax(axis=1)))


def cost_metrics(model: nn.Module, input_shape: tuple[int, int, int], latency: LatencySettings) -> dict[str, Any]:
    """Params, MACs (batch 1) and measured latency in ms (CPU in ``latency.runtime``; CUDA
    too, eager, when present)."""
    cpu_model = copy.deepcopy(model).cpu().eval()
    runtime = latency.cpu_runtime()
    result: dict[str, Any] = {
        "params": count_params(cpu_model),
        "macs": count_macs(cpu_model, input_shape),
        "latency_ms": measure_latency(
            cpu_model, input_shape, device="cpu", threads=latency.threads, warmup=latency.warmup,
            repeats=latency.repeats, statistic=latency.statistic, runtime=runtime,
            min_time_ms=latency.min_time_ms,
        ),
        "latency_runtime": runtime.describe(),
        "latency_device": f"cpu, {runtime.label()}, {latency.threads} thread(s), batch 1, "
                          f"{latency.statistic} of {latency.repeats}",
    }
    if latency.cuda and torch.cuda.is_available():
        result["latency_ms_cuda"] = measure_latency(
            copy.deepcopy(cpu_model), input_shape, device="cuda", warmup=latency.warmup, repeats=latency.repeats,
            statistic=latency.statistic,
        )
    return result


def check_compatible(trained: TrainedModel, data: PreparedData) -> None:
    """Refuse to score a model on a cache with other classes or another input shape."""
    if list(data.class_names) != list(trained.class_names):
        raise ValueError(
            f"the cache {data.cache_dir} has classes {list(data.class_names)}, but the model was trained on "
            f"{trained.class_names}; evaluate it on the cache it was trained with (cache_dir=...)"
        )
    if tuple(data.input_shape) != tuple(trained.input_shape):
        raise ValueError(
            f"the cache {data.cache_dir} gives inputs of shape {tuple(data.input_shape)}, the model expects "
            f"{tuple(trained.input_shape)}: prepare the data with the model's feature settings"
        )


def evaluate_model(
    trained: TrainedModel,
    data: PreparedData,
    *,
    split: str = "test",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    latency: LatencySettings = LatencySettings(),
) -> dict[str, Any]:
    """Score ``trained`` on one split of ``data`` and measure its cost: the metrics.json dict."""
    check_compatible(trained, data)
    loader = make_loader(data, split, batch_size=batch_size, shuffle=False)
    y_true, probs = predict_probabilities(trained.model.to(device), loader, device=device)
    sources = data.sources[data.rows(split)]
    metrics = classification_metrics(y_true, probs.argmax(axis=1), trained.class_names)
    metrics.update(cost_metrics(trained.model, trained.input_shape, latency))
    metrics.update(
        {
            "recording_accuracy": recording_accuracy(y_true, probs, sources),
            "split": split,
            "num_windows": int(y_true.size),
            "num_recordings": int(np.unique(sources).size),
            "class_names": list(trained.class_names),
            "space": trained.arch.space,
            "space_config": trained.space_config,
            "arch": trained.arch.to_json_dict(),
            "arch_hash": trained.network_hash,
            "arch_string": trained.arch_string,
            "origin": trained.info.get("origin", "unknown"),
            "cache_dir": str(data.cache_dir),
            "model": str(trained.path.resolve()) if trained.path else None,  # compare finds it from anywhere
        }
    )
    return metrics


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path, *, title: str = "") -> Path:
    """A PNG of the confusion matrix: colour = row-normalised rate, text = count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix, dtype=np.int64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    size = max(4.0, 0.55 * n + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(metrics: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics.json``, ``per_class.csv`` and ``confusion_matrix.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out_dir / "metrics.json",
        "per_class": out_dir / "per_class.csv",
        "confusion_matrix": out_dir / "confusion_matrix.png",
    }
    paths["metrics"].write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    with paths["per_class"].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["class", "precision", "recall", "f1", "support"])
        writer.writeheader()
        writer.writerows(metrics["per_class"])
    title = f"{metrics.get('origin', '')} {metrics.get('split', '')} accuracy {metrics['accuracy']:.3f}".strip()
    plot_confusion_matrix(metrics["confusion_matrix"], metrics["class_names"], paths["confusion_matrix"], title=title)
    return paths


def _count(value: int | None) -> str:
    """A count with thousands separators; an ONNX file exported before melnas recorded it has none."""
    return "unknown" if value is None else f"{value:,}"


def format_summary(metrics: dict[str, Any]) -> str:
    """A few lines for the console: headline metrics and the per-class table."""
    lines = [
        f"{metrics.get('split', 'test')} accuracy {metrics['accuracy']:.4f}  F1(macro) {metrics['f1_macro']:.4f}  "
        f"precision {metrics['precision_macro']:.4f}  recall {metrics['recall_macro']:.4f}  "
        f"(per recording: accuracy {metrics['recording_accuracy']:.4f})",
        f"params {_count(metrics.get('params'))}  MACs {_count(metrics.get('macs'))}  latency {metrics['latency_ms']:.3f} ms "
        f"({metrics.get('latency_device', 'cpu')})",
    ]
    if "latency_ms_cuda" in metrics:
        lines.append(f"latency on CUDA {metrics['latency_ms_cuda']:.3f} ms")
    width = max(len(row["class"]) for row in metrics["per_class"])
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for row in metrics["per_class"]:
        lines.append(
            f"{row['class']:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {row['support']:7d}"
        )
    return "\n".join(lines)



def evaluate_checkpoint(
    model_path: str | Path,
    *,
    out_dir: str | Path,
    cache_dir: str | Path | None = None,
    split: str = "test",
    batch_size: int = 256,
    device: str = "auto",
    latency: LatencySettings = LatencySettings(),
) -> dict[str, Any]:
    """``melnas-eval``: load ``model.pt``, score it on ``split`` of its cache, write the report.

    ``cache_dir=None`` uses the cache the model was trained on (recorded in ``model.pt``).
    """
    dev = resolve_device(device)
    trained = load_model(model_path, device=dev)
    cache_dir = cache_dir or trained.data_meta.get("cache_dir")
    if not cache_dir:
        raise ValueError(f"{model_path} does not record its cache: pass cache_dir=<prepared cache>")
    metrics = evaluate_model(
        trained, open_prepared(cache_dir), split=split, batch_size=batch_size, device=dev, latency=latency
    )
    metrics.update(
        {
            "source": trained.info.get("source"),
            "retrained": True,
            "training": trained.info.get("training"),
        }
    )
    write_report(metrics, out_dir)
    return metrics
