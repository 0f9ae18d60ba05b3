"""``melnas-eval model=<file>.onnx``: score an exported ONNX file (float or int8) in ONNX
Runtime on a split of its cache, with the same metrics as a ``model.pt``.

The predictions are the file's own (so an int8 file's accuracy is the quantized
model's), and so is the latency: its session timed at batch 1 by the one timing loop
(``nas.latency.measure.time_calls``). Params and MACs are those of the float network
(recorded in the file at export).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nas.data.dataset import open_prepared
from nas.evaluate.export import INPUT_NAME
from nas.evaluate.metrics import (
    classification_metrics,
    recording_accuracy,
    write_report,
)
from nas.evaluate.quantized import OnnxClassifier, model_windows
from nas.latency.measure import LatencySettings, time_calls


def evaluate_onnx_file(
    path: str | Path, *, out_dir: str | Path, cache_dir: str | Path | None = None, split: str = "test",
    latency: LatencySettings = LatencySettings(),
) -> dict[str, Any]:
    """Score the ONNX file ``path`` on ``split`` of its cache (or ``cache_dir``); write the
    report (``metrics.json`` ...) into ``out_dir`` and return the metrics dict."""
    model = OnnxClassifier(path, threads=latency.threads)
    cache_dir = cache_dir or (model.meta.get("data_meta") or {}).get("cache_dir")
    if not cache_dir:
        raise ValueError(f"{path} does not record its cache: pass cache_dir=<prepared cache>")
    data = open_prepared(cache_dir)
    if list(data.class_names) != model.class_names or tuple(data.input_shape) != model.input_shape:
        raise ValueError(f"the cache {cache_dir} has other classes or input shape than {path}; pass the cache "
                         "the model was trained on (cache_dir=...)")
    windows, labels = model_windows(data, split, None)
    logits = model.logits(windows)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    sample = {INPUT_NAME: windows[:1]}
    latency_ms = time_calls(lambda: model.session.run(None, sample), warmup=latency.warmup, repeats=latency.repeats,
                            statistic=latency.statistic, min_time_ms=latency.min_time_ms)
    sources = data.sources[data.rows(split)]
    metrics = classification_metrics(labels, probs.argmax(axis=1), model.class_names)
    metrics.update({
        "params": model.meta.get("params"),
        "macs": model.meta.get("macs"),
        "latency_ms": latency_ms,
        "latency_runtime": {"name": "onnxruntime", "precision": model.precision, "file": str(Path(path).resolve())},
        "latency_device": f"cpu, onnxruntime {model.precision} (the file's session), {latency.threads} thread(s), "
                          f"batch 1, {latency.statistic} of >= {latency.repeats}",
        "precision": model.precision,
        "recording_accuracy": recording_accuracy(labels, probs, sources),
        "split": split,
        "num_windows": int(labels.size),
        "num_recordings": int(np.unique(sources).size),
        "class_names": model.class_names,
        "space": model.meta["arch"].get("space") if isinstance(model.meta.get("arch"), dict) else None,
        "space_config": model.meta.get("space_config"),
        "arch": model.meta.get("arch"),
        "arch_string": model.meta.get("arch_string"),
        "arch_hash": model.meta.get("arch_hash"),
        "origin": model.meta.get("origin", "unknown"),
        "cache_dir": str(data.cache_dir),
        "model": str(Path(path).resolve()),
        "retrained": True,
    })
    write_report(metrics, out_dir)
    return metrics
