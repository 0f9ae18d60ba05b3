"""Latency of trained models in each runtime, and int8 accuracy: the README's runtime table.

    PYTHONPATH=$PWD python benchmarks/bench_runtimes.py a/model.pt b/model.pt c/model.pt
    PYTHONPATH=$PWD python benchmarks/bench_runtimes.py ... --methods minmax,entropy,percentile

Per model: eager torch, TorchScript (traced, frozen), ONNX Runtime fp32 and ONNX Runtime
int8 (``melnas-export --int8``: static QDQ, per-channel weights, calibrated on train
windows of the model's cache). All runs are prepared first, then each round times them
all interleaved over 2 s (``nas.latency.timing.time_interleaved``), so every figure was
taken under the same conditions: batch 1, 1 thread, each reading the fastest of >=
``--repeats`` runs and >= 50 ms, the table the median over ``--rounds`` rounds. Accuracy: test split, the float model in
torch vs the int8 file in ONNX Runtime. Prints a markdown table and the ratios to ORT fp32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from nas.data.dataset import open_prepared
from nas.evaluate.quantized import OnnxClassifier, export_int8, model_windows
from nas.io.model_file import load_model
from nas.latency.runtimes import OnnxRuntime, Runtime, TorchScriptRuntime
from nas.latency.side_by_side import ROUND_SPAN_MS
from nas.latency.timing import time_interleaved
from nas.runtime import torch_threads

RUNTIMES = ("torch eager", "TorchScript", "ORT fp32", "ORT int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model.pt files (melnas-train)")
    parser.add_argument("--cache", help="prepared cache for calibration and accuracy (default: each model's own)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--methods", default="minmax", help="int8 calibration methods to compare (comma-separated); "
                        "the first one is timed")
    args = parser.parse_args()
    methods = args.methods.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="bench_runtimes_"))
    runs, rows = [], []
    for index, path in enumerate(args.models):
        trained = load_model(path)
        model = trained.model.cpu().eval()
        cache = args.cache or trained.data_meta["cache_dir"]
        data = open_prepared(cache)
        windows, labels = model_windows(data, "test", None)
        with torch.no_grad():
            fp32_acc = float(np.mean(model(torch.from_numpy(windows)).argmax(1).numpy() == labels))
        int8 = {}
        for method in methods:
            check = export_int8(trained, tmp / f"m{index}-{method}.int8.onnx", cache_dir=cache, method=method)
            acc = float(np.mean(OnnxClassifier(check.path).logits(windows).argmax(1) == labels))
            int8[method] = (check, acc)
        x = torch.randn(1, *trained.input_shape, generator=torch.Generator().manual_seed(0))
        session = OnnxClassifier(int8[methods[0]][0].path).session
        feed = {"logmel": x.numpy()}
        with torch.no_grad():
            runs += [Runtime().prepare(model, [x], threads=1), TorchScriptRuntime().prepare(model, [x], threads=1),
                     OnnxRuntime().prepare(model, [x], threads=1), lambda s=session, f=feed: s.run(None, f)]
        rows.append((Path(path).parent.name, trained.arch_string, fp32_acc, int8))

    with torch_threads(1), torch.no_grad():
        readings = [time_interleaved(runs, warmup=20, repeats=args.repeats, statistic="min", min_time_ms=50,
                                     min_span_ms=ROUND_SPAN_MS) for _ in range(args.rounds)]
    ms = [statistics.median(r) for r in zip(*readings)]
    print(f"load average (1 min) when the timing ended: {os.getloadavg()[0]:.1f}; {len(runs)} runs timed interleaved, "
          f"{args.rounds} rounds of >= 2 s, fastest of >= {args.repeats} runs and >= 50 ms each, batch 1, 1 thread\n")
    print("| model | " + " | ".join(f"{r} ms" for r in RUNTIMES) + " | eager / ORT | int8 speed-up | "
          "test acc fp32 | test acc int8 (" + methods[0] + ") | int8 top-1 agreement |")
    print("|---" * (len(RUNTIMES) + 6) + "|")
    for i, (name, _, fp32_acc, int8) in enumerate(rows):
        t = ms[4 * i : 4 * i + 4]
        check, acc = int8[methods[0]]
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in t) + f" | {t[0] / t[2]:.1f}x | {t[2] / t[3]:.2f}x | "
              f"{fp32_acc:.4f} | {acc:.4f} | {check.agreement:.4f} |")
    if len(methods) > 1:
        print("\nint8 test accuracy by calibration method (" + ", ".join(methods) + "):")
        for name, _, fp32_acc, int8 in rows:
            print(f"  {name}: fp32 {fp32_acc:.4f}; " + ", ".join(f"{m} {int8[m][1]:.4f}" for m in methods))
    for name, arch, *_ in rows:
        print(f"  {name}: {arch}")


if __name__ == "__main__":
    main()
