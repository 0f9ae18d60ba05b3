"""Training throughput of melnas against Microsoft NNI 3.0 on the same MobileNetV3 space.

Both sides train, at batch 64 for 11 classes with SGD (Nesterov momentum, weight
decay): a weight-shared supernet on a fresh uniformly random arch per minibatch, and
standalone children of such archs (one built per step, ahead of the timing). A step
is zero_grad + forward + cross-entropy + backward + optimizer step; drawing the arch
(NNI: ``resample()`` over its supernet modules) is outside the timing. Per round and
side: 5 warm-up steps, then ``--steps`` timed ones; samples/s = batch / median step
time. Rounds alternate which side goes first; the printed figures are medians over
rounds, so load changes on a shared machine hit both sides alike.

The matched space: MobileNetV3-Small's stages (stem 16; 16 s2; 24 x2 s2; 40 x3 s2;
48 x2; 96 x3 s2; head 576 -> 1024) at width 0.5, kernels 3/5/7, expansions 3/4/6, SE
and depth searchable, h-swish/ReLU as in Small. melnas: ``MobileNetV3Space(backbone=
"small", width=0.5)`` (it also searches the activation and offers each layer's
reference ratio), input 1x64x63. NNI: ``nni.nas.hub.pytorch.MobileNetV3Space`` with
those stages, made a supernet by ``RandomOneShot().mutate_model``, children by
``space.freeze(sample)``; its stem needs 3 channels, so it gets 3x64x63.

NNI is archived and must never be a melnas dependency: it runs in its own virtual
environment, in a subprocess that this script starts with the embedded worker below.

    python3 -m venv /tmp/nni-venv
    /tmp/nni-venv/bin/pip install torch==2.13.0 nni==3.0 pytorch-lightning torchmetrics
    python benchmarks/bench_peer_nni.py                          # CPU, 1 thread, 3 rounds
    python benchmarks/bench_peer_nni.py --nni-python /path/to/python --rounds 5 --threads 2
    python benchmarks/bench_peer_nni.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from nas.runtime import resolve_device
from search_spaces.mobilenetv3 import MobileNetV3Space

BATCH, NUM_CLASSES, MELS, FRAMES = 64, 11, 64, 63

# Runs under NNI's interpreter. Reads one JSON request per line ({"seed": int}) and
# answers one JSON line {"supernet": samples/s, "children": samples/s}.
NNI_WORKER = r'''
import copy, json, statistics, sys, time
import torch
from torch import nn
from nni.nas.hub.pytorch import MobileNetV3Space
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
from nni.nas.strategy import RandomOneShot

cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
torch.manual_seed(0)
device = torch.device(cfg["device"])
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
space = MobileNetV3Space(
    num_labels=cfg["num_classes"], base_widths=(16, 16, 24, 40, 48, 96, 576, 1024),
    width_multipliers=0.5, expand_ratios=(3.0, 4.0, 6.0), squeeze_excite=("optional",) * 5,
    depth_range=[(1, 2), (1, 3), (1, 2), (1, 3)], stride=(2, 2, 2, 2, 1, 2, 1, 1),
    activation=("hswish", "relu", "relu", "hswish", "hswish", "hswish", "hswish", "hswish"),
    bn_momentum=0.01,
)
supernet = RandomOneShot().mutate_model(copy.deepcopy(space)).to(device).train()
choices = [m for m in supernet.modules() if isinstance(m, BaseSuperNetModule)]
x = torch.randn(cfg["batch"], 3, cfg["mels"], cfg["frames"], device=device)
y = torch.randint(cfg["num_classes"], (cfg["batch"],), device=device)

def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=2.5e-4)

def resample():
    sample = {}
    for module in choices:
        sample.update(module.resample(memo=sample))
    return sample

def step(model, opt):
    sync()
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    sync()
    return time.perf_counter() - start

super_opt = sgd(supernet)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    torch.manual_seed(json.loads(line)["seed"])
    n = cfg["warmup"] + cfg["steps"]
    sup = []
    for _ in range(n):
        resample()
        sup.append(step(supernet, super_opt))
    children = [space.freeze(resample()).to(device).train() for _ in range(n)]
    kids = [step(child, sgd(child)) for child in children]
    w = cfg["warmup"]
    print(json.dumps({"supernet": cfg["batch"] / statistics.median(sup[w:]),
                      "children": cfg["batch"] / statistics.median(kids[w:])}), flush=True)
'''


class NNIWorker:
    """NNI's side: a long-lived subprocess under NNI's interpreter (import and build once)."""

    def __init__(self, python: str, config: dict) -> None:
        with tempfile.NamedTemporaryFile("w", suffix="_nni_worker.py", delete=False) as script:
            script.write(NNI_WORKER)
        self._script = Path(script.name)
        self._proc = subprocess.Popen(
            [python, str(self._script), json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self._read()  # {"ready": true} once NNI has imported and built its supernet

    def _read(self) -> dict:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:  # skip anything NNI itself prints
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"the NNI worker exited with code {self._proc.wait()} (see its stderr above)")

    def round(self, seed: int) -> dict[str, float]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"seed": seed}) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait()
        self._script.unlink(missing_ok=True)


class MelnasSide:
    """melnas's side, in this process: one supernet (and optimizer) kept across rounds."""

    def __init__(self, device: torch.device, warmup: int, steps: int) -> None:
        self.space = MobileNetV3Space(backbone="small", width=0.5, kernels=(3, 5, 7), expand_ratios=(3, 4, 6))
        self.device, self.warmup, self.steps = device, warmup, steps
        self.sync: Callable[[], None] = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        torch.manual_seed(0)
        shape = (1, MELS, FRAMES)
        self.supernet = self.space.supernet(num_classes=NUM_CLASSES, input_shape=shape).to(device).train()
        self.super_opt = _sgd(self.supernet)
        self.x = torch.randn(BATCH, *shape, device=device)
        self.y = torch.randint(NUM_CLASSES, (BATCH,), device=device)

    def _step(self, model: Callable[[torch.Tensor], torch.Tensor], opt: torch.optim.Optimizer) -> float:
        self.sync()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(self.x), self.y).backward()
        opt.step()
        self.sync()
        return time.perf_counter() - start

    def round(self, seed: int) -> dict[str, float]:
        rng = np.random.default_rng(seed)
        archs = [self.space.random_arch(rng) for _ in range(self.warmup + self.steps)]
        sup = [self._step(lambda v, a=arch: self.supernet(v, a), self.super_opt) for arch in archs]
        shape = (1, MELS, FRAMES)
        children = [self.space.build(a, num_classes=NUM_CLASSES, input_shape=shape).to(self.device).train()
                    for a in archs]
        kids = [self._step(child, _sgd(child)) for child in children]
        return {"supernet": BATCH / statistics.median(sup[self.warmup:]),
                "children": BATCH / statistics.median(kids[self.warmup:])}


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=2.5e-4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nni-python", default="/tmp/nni-venv/bin/python", help="python of NNI's venv")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round and side")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, both sides")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    args = parser.parse_args()
    if not Path(args.nni_python).exists():
        sys.exit(f"no python at {args.nni_python}; install NNI in its own venv (see this script's docstring)")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    config = {"threads": args.threads, "device": str(device), "batch": BATCH, "num_classes": NUM_CLASSES,
              "mels": MELS, "frames": FRAMES, "warmup": args.warmup, "steps": args.steps}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} thread(s)"
    print(f"melnas vs NNI 3.0, matched MobileNetV3-Small space (width 0.5, kernels 3/5/7), batch {BATCH}, "
          f"{NUM_CLASSES} classes, {args.steps} timed steps after {args.warmup} per round and side, "
          f"{args.rounds} rounds, {name}, torch {torch.__version__}")
    melnas = MelnasSide(device, args.warmup, args.steps)
    nni = NNIWorker(args.nni_python, config)
    results: dict[str, list[dict[str, float]]] = {"melnas": [], "nni": []}
    try:
        for round_ in range(args.rounds):
            sides = [("melnas", melnas.round), ("nni", nni.round)]
            for side, run in sides if round_ % 2 == 0 else sides[::-1]:
                results[side].append(run(round_))
            print(f"round {round_ + 1}: " + "   ".join(
                f"{side} supernet {r[-1]['supernet']:7.1f}/s children {r[-1]['children']:7.1f}/s"
                for side, r in results.items()), flush=True)
    finally:
        nni.close()
    print(f"\n{'':10}{'melnas samples/s':>18}{'NNI samples/s':>15}{'ratio':>8}   (per-round ratios)")
    for kind in ("supernet", "children"):
        ours = statistics.median(r[kind] for r in results["melnas"])
        theirs = statistics.median(r[kind] for r in results["nni"])
        per_round = [m[kind] / n[kind] for m, n in zip(results["melnas"], results["nni"])]
        print(f"{kind:10}{ours:18.1f}{theirs:15.1f}{ours / theirs:8.2f}   "
              f"({min(per_round):.2f}-{max(per_round):.2f})")


if __name__ == "__main__":
    main()
