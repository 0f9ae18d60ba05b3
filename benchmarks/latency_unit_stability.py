"""Where latency-table noise sits: each unit of one random arch, and the whole arch, read
in several fresh runtime sessions, several times per session.

    PYTHONPATH=$PWD python benchmarks/latency_unit_stability.py [--runtime onnxruntime] [--seed 3]

Each reading is the fastest of >= 100 runs and >= 50 ms (what the latency table takes),
at batch 1 on 1 thread. Prints, per unit, every session's fastest reading and two ratios:
the largest over the smallest across sessions, and the largest max/min within one
session. A unit whose within-session ratio is far from 1 reads bimodally, so more
repeats do not settle it; a whole arch near 1.00x says the runtime itself is steady.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from nas.io.registry import build_space
from nas.latency.measure import time_calls
from nas.latency.runtimes import RUNTIMES, make_runtime
from nas.runtime import torch_threads

QUICK_SPACE = {"width": 0.5, "kernels": [3, 5], "expand_ratios": [3, 6]}  # experiment=quick
INPUT_SHAPE = (1, 64, 63)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="onnxruntime", choices=[r for r in RUNTIMES if r != "auto"])
    parser.add_argument("--seed", type=int, default=3, help="draws the arch")
    parser.add_argument("--units", type=int, default=4, help="how many of the arch's first units")
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--readings", type=int, default=3, help="readings per session")
    args = parser.parse_args()

    space = build_space("mobilenetv3", **QUICK_SPACE)
    arch = space.random_arch(np.random.default_rng(args.seed))
    runtime = make_runtime(args.runtime, device=torch.device("cpu"), precision="fp32")
    items = [(u.key, u.build, u.input_shape) for u in space.layers(arch, num_classes=11, input_shape=INPUT_SHAPE)]
    items = items[: args.units] + [
        ("whole arch " + space.arch_string(arch), lambda: space.build(arch, num_classes=11, input_shape=INPUT_SHAPE),
         INPUT_SHAPE)
    ]
    print(f"{runtime.label()}, 1 thread; {args.sessions} sessions x {args.readings} readings (us)")
    with torch_threads(1), torch.no_grad():
        for name, build, shape in items:
            sessions = []
            for _ in range(args.sessions):
                run = runtime.prepare(build().eval(), [torch.randn((1, *shape))], threads=1)
                sessions.append([time_calls(run, warmup=10, repeats=100, statistic="min", min_time_ms=50) * 1e3
                                 for _ in range(args.readings)])
            fastest = [min(readings) for readings in sessions]
            within = max(max(readings) / min(readings) for readings in sessions)
            print(f"{name[:70]:70s} sessions: {' '.join(f'{t:6.1f}' for t in fastest)}  "
                  f"between {max(fastest) / min(fastest):.2f}x  within {within:.2f}x")


if __name__ == "__main__":
    main()
