"""What one search epoch costs per space setting: shared-weight steps, scoring, latency lookups.

Run: ``python benchmarks/bench_search_epoch.py [--threads 2] [--steps 6]``.

For each space setting it times, on random 1 x 64 x 63 inputs (11 classes):
- one shared-weight SGD step (a new random arch per step) at the training batch size;
- scoring one arch on one validation minibatch (no grad, batch-statistics BN);
- the latency-table lookup of a new arch (units timed lazily, as in a search).
Wall time and process CPU time are both printed: on a shared machine the CPU time
divided by the thread count is the better estimate of an idle machine's wall time.
The last columns extrapolate one epoch of ``experiment=quick``-like settings and give
each setting's cost (CPU-time estimate) relative to the first row.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any, Callable

# Idle OpenMP threads sleep instead of spinning, so CPU time measures work, not waiting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nas.latency.measure import latency_table_for  # noqa: E402
from nas.io.registry import build_space, space_config  # noqa: E402
from nas.search.scoring import ArchScorer  # noqa: E402

INPUT_SHAPE = (1, 64, 63)
NUM_CLASSES = 11
# (label, registered space, overrides of its conf/search_space YAML)
SETTINGS: list[tuple[str, str, dict[str, Any]]] = [
    ("mobilenetv3 (quick)", "mobilenetv3", {"width": 0.5, "kernels": [3, 5], "expand_ratios": [3, 6]}),
    ("mobilenetv3 (yaml)", "mobilenetv3", {}),
    ("enas_macro 12x24 (yaml)", "enas_macro", {}),
    ("enas_macro 6x16", "enas_macro", {"num_layers": 6, "filters": 16}),
]


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and mean CPU seconds of ``fn`` over ``repeats`` calls (after one warm-up)."""
    fn()
    walls, cpu_start = [], time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    return float(np.median(walls)), (time.process_time() - cpu_start) / repeats


def bench(name: str, overrides: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    space = build_space(space_config(name), **overrides)
    torch.manual_seed(0)
    net = space.supernet(num_classes=NUM_CLASSES, input_shape=INPUT_SHAPE)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    rng = np.random.default_rng(0)
    x, y = torch.randn(args.batch, *INPUT_SHAPE), torch.randint(0, NUM_CLASSES, (args.batch,))
    xv, yv = torch.randn(args.val_batch, *INPUT_SHAPE), torch.randint(0, NUM_CLASSES, (args.val_batch,))

    def train_step() -> None:
        loss = F.cross_entropy(net(x, space.random_arch(rng)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    net.train()
    train_wall, train_cpu = timed(train_step, args.steps)
    with ArchScorer(net, bn_mode="batch") as scorer:
        score_wall, score_cpu = timed(lambda: scorer.accuracy(space.random_arch(rng), [(xv, yv)]), args.steps)
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        table = latency_table_for(space, num_classes=NUM_CLASSES, input_shape=INPUT_SHAPE, cache_dir=cache,
                                  calibration_archs=args.calibration_archs, warmup=5, repeats=20)
        build_s = time.perf_counter() - start
        lookup_wall, _ = timed(lambda: table.predict_arch(space, space.random_arch(rng)), args.steps)
    epoch = (args.train_steps * train_wall + args.controller_steps * args.archs_per_step * (score_wall + lookup_wall))
    epoch_cpu = (args.train_steps * train_cpu + args.controller_steps * args.archs_per_step * score_cpu) / args.threads
    return {"decisions": len(space.decisions), "train_ms": 1e3 * train_wall, "train_cpu_ms": 1e3 * train_cpu,
            "score_ms": 1e3 * score_wall, "score_cpu_ms": 1e3 * score_cpu, "lookup_ms": 1e3 * lookup_wall,
            "table_s": build_s, "epoch_s": epoch, "epoch_cpu_s": epoch_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="timed repeats of each operation")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--val-batch", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=32, help="shared steps per epoch (2057 windows / 64)")
    parser.add_argument("--controller-steps", type=int, default=10)
    parser.add_argument("--archs-per-step", type=int, default=8)
    parser.add_argument("--calibration-archs", type=int, default=5)
    parser.add_argument("--only", default=None, help="run only settings whose label contains this")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, batch {args.batch}, val batch {args.val_batch}; epoch = "
          f"{args.train_steps} shared steps + {args.controller_steps}x{args.archs_per_step} scored archs")
    header = (f"{'setting':<28}{'dec':>4}{'train ms':>10}{'(cpu)':>8}{'score ms':>10}{'(cpu)':>8}"
              f"{'lookup ms':>10}{'table s':>9}{'epoch s':>9}{'(cpu)':>8}{'ratio':>7}")
    print(header)
    first = None
    bench(*SETTINGS[0][1:], argparse.Namespace(**{**vars(args), "steps": 1}))  # warm-up: allocator, kernels
    for label, name, overrides in SETTINGS:
        if args.only and args.only not in label:
            continue
        r = bench(name, overrides, args)
        first = first or r["epoch_cpu_s"]
        print(f"{label:<28}{r['decisions']:>4}{r['train_ms']:>10.0f}{r['train_cpu_ms'] / args.threads:>8.0f}"
              f"{r['score_ms']:>10.0f}{r['score_cpu_ms'] / args.threads:>8.0f}{r['lookup_ms']:>10.1f}"
              f"{r['table_s']:>9.1f}{r['epoch_s']:>9.1f}{r['epoch_cpu_s']:>8.1f}{r['epoch_cpu_s'] / first:>7.2f}")


if __name__ == "__main__":
    main()
