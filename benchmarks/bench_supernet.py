"""Training-step throughput: the weight-shared supernet on sampled archs vs their standalone builds.

For each space, K random archs are drawn; each is trained both ways on the same batch
(forward, cross-entropy, backward, SGD step with Nesterov momentum and weight decay,
as in the search): ``supernet(x, arch)`` with one optimizer over all supernet weights,
and ``space.build(arch)`` (loaded with the supernet's weights for that arch) with its
own optimizer. Steps are interleaved (supernet then standalone for one arch, then the
next arch, the order flipped every round) so that load changes on a shared machine
hit both sides alike. Throughput = batch / median step time; the ratio supernet /
standalone is the median over all back-to-back pairs of steps (standalone time /
supernet time), which cancels load drift (target >= 0.8).

    python benchmarks/bench_supernet.py                      # both spaces, CPU, batch 64 x 1x64x63
    python benchmarks/bench_supernet.py --device cuda --archs 8 --rounds 5
    python benchmarks/bench_supernet.py --threads 1   # on a machine shared with other jobs
    python benchmarks/bench_supernet.py --device cuda --amp bf16   # mixed precision (nas/train/amp.py)

On an overloaded CPU, torch's multi-threaded ops wait for descheduled worker threads:
on 2 cores shared by ~7 processes, --threads 1 ran the ENAS child 10x faster than 2.
    python benchmarks/bench_supernet.py --space enas_macro --set filters=36 --set stem_stride=1
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import yaml
from torch import nn

from nas.runtime import resolve_device
from nas.io.registry import available_spaces, build_space
from nas.train.amp import AMP_CHOICES, FP32, MixedPrecision, resolve_amp
from nas.train.loop import train_step
from search_spaces.base import Arch, SearchSpace


@dataclass
class Timings:
    supernet: list[float] = field(default_factory=list)
    standalone: list[float] = field(default_factory=list)


def make_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=2.5e-4)


def timed_step(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    sync: Callable[[], None],
    amp: MixedPrecision = FP32,
) -> float:
    """Seconds for one ``train_step`` (gradients set to None, so unchosen paths get no update)."""
    sync()
    start = time.perf_counter()
    train_step(model, x, y, loss_fn=nn.functional.cross_entropy, optimizer=optimizer, forward=forward, amp=amp)
    sync()
    return time.perf_counter() - start


def bench_space(
    space: SearchSpace, *, archs: int, rounds: int, batch: int, input_shape: tuple[int, int, int],
    num_classes: int, device: torch.device, seed: int, amp: str = "off",
) -> list[tuple[str, Timings]]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sampled: list[Arch] = [space.random_arch(rng) for _ in range(archs)]
    supernet = space.supernet(num_classes=num_classes, input_shape=input_shape).to(device).train()
    super_opt = make_optimizer(supernet.parameters())
    super_amp, standalone_amps = resolve_amp(amp, device), [resolve_amp(amp, device) for _ in sampled]
    standalone = []
    for arch in sampled:
        model = space.build(arch, num_classes=num_classes, input_shape=input_shape)
        model.load_state_dict(supernet.subnet_state_dict(arch))
        model.to(device).train()
        standalone.append((model, make_optimizer(model.parameters())))
    x = torch.randn(batch, *input_shape, device=device)
    y = torch.randint(num_classes, (batch,), device=device)
    timings = [Timings() for _ in sampled]
    for round_ in range(rounds + 1):  # round 0 warms up (allocator, oneDNN/cuDNN plans) and is dropped
        for arch, (model, opt), t, own_amp in zip(sampled, standalone, timings, standalone_amps):
            sides = [
                ("supernet", lambda a=arch: timed_step(supernet, lambda v: supernet(v, a), super_opt, x, y, sync,
                                                       super_amp)),
                ("standalone", lambda m=model, o=opt, p=own_amp: timed_step(m, m, o, x, y, sync, p)),
            ]
            for side, step in sides if round_ % 2 == 0 else sides[::-1]:
                seconds = step()
                if round_ > 0:
                    getattr(t, side).append(seconds)
    return [(space.arch_string(a), t) for a, t in zip(sampled, timings)]


def throughput(batch: int, seconds: list[float]) -> float:
    """Samples/s at the median step time (robust to the odd step hit by another job)."""
    return batch / statistics.median(seconds)


def paired_ratios(timings: list[Timings]) -> list[float]:
    """Supernet / standalone throughput of each back-to-back pair of steps."""
    return [sta / sup for t in timings for sup, sta in zip(t.supernet, t.standalone)]


def parse_shape(text: str) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in text.lower().split("x"))
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--input must be CxHxW, got {text!r}")
    return shape  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", action="append", choices=available_spaces(), help="repeatable; default: all")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="space setting override")
    parser.add_argument("--archs", type=int, default=4, help="K sampled archs per space")
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per arch and side")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--input", type=parse_shape, default=(1, 64, 63), metavar="CxHxW")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--amp", default="off", choices=AMP_CHOICES, help="mixed precision of the step")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set needs KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"training-step throughput, batch {args.batch} x {'x'.join(map(str, args.input))}, "
          f"{args.rounds} timed steps per arch and side, device {device} ({name}), amp {args.amp}, "
          f"torch {torch.__version__}")
    header = f"{'space':12} {'arch':52} {'supernet/s':>11} {'standalone/s':>13} {'ratio':>6}"
    summary = []
    for space_name in args.space or available_spaces():
        space = build_space(space_name, **overrides)
        rows = bench_space(
            space, archs=args.archs, rounds=args.rounds, batch=args.batch, input_shape=args.input,
            num_classes=args.num_classes, device=device, seed=args.seed, amp=args.amp,
        )
        print("\n" + header)
        for arch_string, t in rows:
            sup, sta = throughput(args.batch, t.supernet), throughput(args.batch, t.standalone)
            shown = arch_string if len(arch_string) <= 52 else arch_string[:49] + "..."
            ratio = statistics.median(paired_ratios([t]))
            print(f"{space_name:12} {shown:52} {sup:11.1f} {sta:13.1f} {ratio:6.2f}")
        sup = throughput(args.batch, [s for _, t in rows for s in t.supernet])
        sta = throughput(args.batch, [s for _, t in rows for s in t.standalone])
        pairs = paired_ratios([t for _, t in rows])
        ratio = statistics.median(pairs)
        print(f"{space_name:12} {'all ' + str(len(rows)) + ' archs':52} {sup:11.1f} {sta:13.1f} {ratio:6.2f}")
        summary.append((space_name, sup, sta, ratio, np.quantile(pairs, [0.25, 0.75])))
    print("\nsummary (target: supernet >= 0.8x standalone)")
    for space_name, sup, sta, ratio, (q1, q3) in summary:
        print(f"  {space_name:12} supernet {sup:8.1f} samples/s   standalone {sta:8.1f} samples/s   "
              f"ratio {ratio:.2f} (paired steps, interquartile {q1:.2f}-{q3:.2f})")


if __name__ == "__main__":
    main()
