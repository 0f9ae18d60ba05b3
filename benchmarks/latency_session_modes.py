"""Do separate runtime sessions of one network time alike? Several sessions per arch, all
timed interleaved (``time_interleaved``, the table's scheme), twice.

    PYTHONPATH=$PWD python benchmarks/latency_session_modes.py [--width 1.0] [--archs 10] [--sessions 4]

For each arch, each session's fastest run over the fastest session of that arch. On the
2-core dev VM (1 MB of L2 per core), default-space archs (width 1.0, 3-4.5 MB of fp32
weights) had 1-21% of sessions over 1.08x, up to 1.3x, and which sessions were slow
changed between the two timings; quick-space archs (``--width 0.5``, 1-2 MB) are the
control. A spread here is what a latency table cannot predict: its calibration archs carry
whatever modes their own sessions were in.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from nas.io.registry import build_space
from nas.latency.runtimes import RUNTIMES, make_runtime
from nas.latency.timing import time_interleaved
from nas.runtime import torch_threads

INPUT_SHAPE = (1, 64, 63)
SLOW = 1.08  # a session over this many times its arch's fastest session counts as slow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", default="onnxruntime", choices=[r for r in RUNTIMES if r != "auto"])
    parser.add_argument("--width", type=float, default=1.0, help="mobilenetv3 width (0.5: the quick space's)")
    parser.add_argument("--archs", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=4, help="separately prepared sessions per arch")
    parser.add_argument("--span-ms", type=float, default=10_000.0)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    narrow = {"kernels": [3, 5], "expand_ratios": [3, 6]} if args.width < 1.0 else {}
    space = build_space("mobilenetv3", width=args.width, **narrow)
    runtime = make_runtime(args.runtime, device=torch.device("cpu"))
    rng = np.random.default_rng(args.seed)
    archs = [space.random_arch(rng) for _ in range(args.archs)]
    inputs = [torch.randn(1, *INPUT_SHAPE, generator=torch.Generator().manual_seed(0))]
    with torch_threads(1), torch.no_grad():
        models = [space.build(a, num_classes=10, input_shape=INPUT_SHAPE).eval() for a in archs]
        params = [sum(p.numel() for p in m.parameters()) for m in models]
        runs = [runtime.prepare(m, inputs, threads=1) for m in models for _ in range(args.sessions)]
        print(f"{args.runtime}, width {args.width}: {args.archs} archs of {min(params) / 1e6:.2f}-"
              f"{max(params) / 1e6:.2f}M parameters, {args.sessions} sessions each, timed over {args.span_ms / 1000:.0f} s")
        for timing in (1, 2):
            ms = np.array(time_interleaved(runs, warmup=10, repeats=50, statistic="min", min_time_ms=50,
                                           min_span_ms=args.span_ms)).reshape(args.archs, args.sessions)
            rel = ms / ms.min(axis=1, keepdims=True)
            print(f"timing {timing}: sessions over {SLOW}x their arch's fastest: {(rel > SLOW).mean():.0%}, "
                  f"worst {rel.max():.2f}x; per arch: " + "  ".join(" ".join(f"{v:.2f}" for v in row) for row in rel))


if __name__ == "__main__":
    main()
