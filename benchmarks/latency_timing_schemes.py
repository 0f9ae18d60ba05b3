"""Is this machine steady enough to time small models, and which timing scheme agrees with
itself: one block per model, or windows interleaved over a span (what the latency table does)?

    PYTHONPATH=$PWD python benchmarks/latency_timing_schemes.py [--runtime onnxruntime] [--archs 40]

1. Phases: one random arch of the quick space, timed in windows of 10 runs (fastest of
   each) for --scan-s seconds, each window followed by a fixed pure-Python loop. Prints the
   share of slow windows (over 1.2x the fastest), how long slow and fast phases last, and
   how closely the Python loop follows the model: a slowdown that hits both is the
   machine's, not the runtime's.
2. Agreement: --archs random archs, prepared once per timing, timed twice (fresh sessions)
   with each scheme; prints the share of archs whose two timings agree within 5% and 10%.
   "blocks": each arch in turn for >= 50 ms, 3 rounds (the table's scheme before
   interleaving). "interleaved": ``time_interleaved`` over --span-ms.
Batch 1, 1 thread, fastest run of each figure.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nas.io.registry import build_space
from nas.latency.runtimes import RUNTIMES, Run, make_runtime
from nas.latency.timing import time_calls, time_interleaved
from nas.runtime import torch_threads

QUICK_SPACE = {"width": 0.5, "kernels": [3, 5], "expand_ratios": [3, 6]}  # experiment=quick
INPUT_SHAPE = (1, 64, 63)
SLOW = 1.2  # a window over this many times the fastest window is a slow one


def python_loop() -> None:
    total = 0
    for i in range(2000):
        total += i


def fastest_of(run: Run, calls: int) -> float:
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best


def phases(run: Run, seconds: float) -> None:
    for _ in range(100):
        run()
    stamps, model_ms, loop_ms = [], [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        model_ms.append(fastest_of(run, 10))
        loop_ms.append(fastest_of(python_loop, 10))
        stamps.append(time.perf_counter())
    model, loop = np.array(model_ms), np.array(loop_ms)
    slow = model > SLOW * model.min()
    print(f"phases: {len(model)} windows over {seconds:.0f} s; slow share {slow.mean():.0%}; slow/fast median "
          f"{np.median(model[slow]) / np.median(model[~slow]) if slow.any() else 1.0:.2f}x (model), "
          f"{np.median(loop[slow]) / np.median(loop[~slow]) if slow.any() else 1.0:.2f}x (Python loop); "
          f"correlation {np.corrcoef(model, loop)[0, 1]:.2f}")
    changes = np.flatnonzero(np.diff(slow.astype(int))) + 1
    bounds = np.concatenate([[0], changes, [len(slow)]])
    for state, name in ((True, "slow"), (False, "fast")):
        lengths = [1000 * (stamps[b - 1] - stamps[a]) for a, b in zip(bounds[:-1], bounds[1:]) if slow[a] == state]
        if lengths:
            print(f"  {name} phases: {len(lengths)}, ms median {np.median(lengths):.0f}, max {max(lengths):.0f}")


def blocks(runs: list[Run]) -> np.ndarray:
    best = np.full(len(runs), np.inf)
    for _ in range(3):
        for i, run in enumerate(runs):
            best[i] = min(best[i], time_calls(run, warmup=10, repeats=50, statistic="min", min_time_ms=50))
    return best


def agreement(name: str, first: np.ndarray, second: np.ndarray, seconds: float) -> None:
    ratio = second / first
    print(f"{name:12s} {seconds:5.1f} s per timing; within 5%: {np.mean(abs(ratio - 1) <= 0.05):4.0%}, "
          f"within 10%: {np.mean(abs(ratio - 1) <= 0.10):4.0%}, second/first {ratio.min():.2f}-{ratio.max():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="onnxruntime", choices=[r for r in RUNTIMES if r != "auto"])
    parser.add_argument("--archs", type=int, default=40)
    parser.add_argument("--scan-s", type=float, default=20.0)
    parser.add_argument("--span-ms", type=float, default=10000.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    space = build_space("mobilenetv3", **QUICK_SPACE)
    rng = np.random.default_rng(args.seed)
    archs = [space.random_arch(rng) for _ in range(args.archs)]
    runtime = make_runtime(args.runtime, device=torch.device("cpu"), precision="fp32")
    x = [torch.randn((1, *INPUT_SHAPE), generator=torch.Generator().manual_seed(0))]
    with torch_threads(1), torch.no_grad():
        models = [space.build(a, num_classes=10, input_shape=INPUT_SHAPE).eval() for a in archs]

        def prepared() -> list[Run]:
            return [runtime.prepare(m, x, threads=1) for m in models]

        phases(runtime.prepare(models[0], x, threads=1), args.scan_s)
        schemes = {
            "blocks": blocks,
            "interleaved": lambda runs: np.array(time_interleaved(
                runs, warmup=10, repeats=50, statistic="min", min_time_ms=50, min_span_ms=args.span_ms)),
        }
        for name, scheme in schemes.items():
            start = time.perf_counter()
            first = scheme(prepared())
            seconds = time.perf_counter() - start
            agreement(name, first, scheme(prepared()), seconds)


if __name__ == "__main__":
    main()
