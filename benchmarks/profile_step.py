"""Where a MobileNetV3 training step spends its time, per op kind (torch.profiler).

Profiles one supernet step (a fresh random arch per minibatch) and one standalone
step (``space.build`` of the same archs) on the config matched with NNI's one-shot
MobileNetV3 space (see ``bench_peer_nni.py``): MobileNetV3-Small stages, kernels
3/5/7, width 0.5, batch 64 x 1x64x63, 11 classes, SGD with Nesterov momentum. Each
profiled op is put in one kind by its name and input shapes, so that the kinds add up
to the step's total self time:

- ``conv``: dense convs (stem, expand, project, head), forward and backward;
- ``depthwise``: depthwise convs (weight ``[C, 1, k, k]``, ``k > 1``);
- ``se``: squeeze-and-excite (convs on 1x1 maps, pooling, the channel-wise scale);
- ``batchnorm``, ``activation`` (ReLU, h-swish, h-sigmoid and their backwards);
- ``slicing``: cropping shared weights (slice, its backward);
- ``copies``: copy_, clone, contiguous, layout conversions;
- ``optimizer`` (the SGD step and in-place ``add_``/``mul_``), ``linear`` (classifier),
  ``other`` (loss, residual adds, allocation, ...).

    python benchmarks/profile_step.py                       # CPU at 1 and 2 threads
    python benchmarks/profile_step.py --threads 1 --device cuda --steps 20

On CUDA the kinds are split by device (kernel) time, and the CPU column shows the
launch overhead that Python and the dispatcher add per op.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from nas.runtime import resolve_device
from search_spaces.mobilenetv3 import MobileNetV3Space

KINDS = ("conv", "depthwise", "se", "batchnorm", "activation", "slicing", "copies",
         "optimizer", "linear", "other")
_ACTIVATION_OPS = ("hardswish", "hardsigmoid", "relu", "clamp_min", "threshold", "hardtanh")
_COPY_OPS = ("copy_", "_to_copy", "clone", "contiguous", "to_dense", "to_mkldnn", "reorder")


def matched_space() -> MobileNetV3Space:
    """The config matched with NNI's space: Small stages, kernels 3/5/7, width 0.5."""
    return MobileNetV3Space(backbone="small", width=0.5, kernels=(3, 5, 7), expand_ratios=(3, 4, 6))


def op_kind(name: str, shapes: list) -> str:
    """The kind of one profiled op, from its name and (for convs) its input shapes."""
    base = name.removeprefix("aten::")
    if "conv" in base:
        data = shapes[1] if "backward" in base and len(shapes) > 1 else shapes[0] if shapes else []
        weight = shapes[2] if "backward" in base and len(shapes) > 2 else shapes[1] if len(shapes) > 1 else []
        if len(data) == 4 and data[2:] == [1, 1]:
            return "se"
        if len(weight) == 4 and weight[1] == 1 and weight[2] > 1:
            return "depthwise"
        return "conv"
    if "batch_norm" in base:
        return "batchnorm"
    if any(op in base for op in _ACTIVATION_OPS):
        return "activation"
    if base in ("mean", "adaptive_avg_pool2d", "_adaptive_avg_pool2d", "_adaptive_avg_pool2d_backward"):
        return "se"
    if base in ("mul",) and len(shapes) == 2 and len(shapes[1]) == 4 and shapes[1][2:] == [1, 1]:
        return "se"
    if base.startswith(("slice", "narrow", "select", "as_strided")) or base in ("zeros", "zero_"):
        return "slicing"
    if base in _COPY_OPS:
        return "copies"
    if name.startswith("Optimizer") or base in ("_foreach_add_", "_foreach_mul_", "add_", "mul_"):
        return "optimizer"
    if base in ("addmm", "mm", "linear"):
        return "linear"
    return "other"


def kind_times(prof: profile, device: bool) -> dict[str, float]:
    """Self time (microseconds) per kind, summed over the profiled steps."""
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages(group_by_input_shape=True):
        seconds = event.self_device_time_total if device else event.self_cpu_time_total
        totals[op_kind(event.key, event.input_shapes)] += seconds
    return totals


def profile_steps(
    step: Callable[[int], None], steps: int, device: torch.device
) -> tuple[dict[str, float], dict[str, float] | None]:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for i in range(5):  # warm-up: allocator, oneDNN/cuDNN plans
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    with profile(activities=activities, record_shapes=True) as prof:
        for i in range(steps):
            step(5 + i)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return kind_times(prof, device=False), kind_times(prof, device=True) if device.type == "cuda" else None


def print_table(title: str, columns: dict[str, dict[str, float]], steps: int) -> None:
    print(f"\n{title}  (ms per step, share of the step)")
    print(f"{'kind':12}" + "".join(f"{name:>22}" for name in columns))
    totals = {name: sum(times.values()) for name, times in columns.items()}
    for kind in KINDS:
        cells = "".join(
            f"{times.get(kind, 0.0) / 1e3 / steps:14.2f} {100 * times.get(kind, 0.0) / max(totals[name], 1e-9):5.1f}%"
            for name, times in columns.items()
        )
        print(f"{kind:12}{cells}")
    print(f"{'total':12}" + "".join(f"{totals[name] / 1e3 / steps:14.2f}       " for name in columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, action="append", help="CPU threads (repeatable; default 1 and 2)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--steps", type=int, default=20, help="profiled steps per side (after 5 warm-up)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = resolve_device(args.device)
    space = matched_space()
    rng = np.random.default_rng(args.seed)
    archs = [space.random_arch(rng) for _ in range(args.steps + 5)]
    x = torch.randn(args.batch, 1, 64, 63, device=device)
    y = torch.randint(11, (args.batch,), device=device)
    print(f"profile of one training step, matched config, batch {args.batch} x 1x64x63, "
          f"device {device}, torch {torch.__version__}")
    for threads in args.threads or [1, 2]:
        torch.set_num_threads(threads)
        profile_side_by_side(space, archs, x, y, args.steps, device, threads, args.seed)


def profile_side_by_side(
    space: MobileNetV3Space, archs: list, x: torch.Tensor, y: torch.Tensor, steps: int,
    device: torch.device, threads: int, seed: int,
) -> None:
    """Profile ``steps`` supernet steps, then as many standalone ones, and print both."""
    torch.manual_seed(seed)
    supernet = space.supernet(num_classes=11, input_shape=(1, 64, 63)).to(device).train()
    children = [space.build(a, num_classes=11, input_shape=(1, 64, 63)).to(device).train() for a in archs]
    super_opt = _sgd(supernet.parameters())
    child_opts = [_sgd(c.parameters()) for c in children]

    def train(model: Callable[[torch.Tensor], torch.Tensor], opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    sup_cpu, sup_dev = profile_steps(lambda i: train(lambda v: supernet(v, archs[i]), super_opt), steps, device)
    sta_cpu, sta_dev = profile_steps(lambda i: train(children[i], child_opts[i]), steps, device)
    print_table(f"CPU self time, {threads} thread(s)", {"supernet": sup_cpu, "standalone": sta_cpu}, steps)
    if sup_dev is not None and sta_dev is not None:
        print_table(f"{device} kernel time", {"supernet": sup_dev, "standalone": sta_dev}, steps)


def _sgd(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=2.5e-4)


if __name__ == "__main__":
    main()
