"""One short check of the GPU path, for a session that has a GPU; prints one summary table.

    python benchmarks/gpu_check.py                        # CUDA (never run yet; the quick search took 1.5 min on an H200)
    python benchmarks/gpu_check.py --epochs 4             # fewer search epochs for a short GPU lease
    python benchmarks/gpu_check.py --device cpu --quick   # the same steps, tiny, on a CPU (~2 min on 2 idle cores)

Steps, each timed; a failing step is reported in the table and the rest still run:

1. ``pytest tests/test_cuda.py`` (skips without CUDA).
2. Training-step throughput (``bench_supernet.bench_space``): supernet and standalone
   samples/s with ``amp`` off, bf16 and (CUDA) fp16.
3. The quick search (``experiment=quick``) as one process with ``trainer.amp`` off and
   bf16, and under ``torchrun --nproc_per_node=2`` on the same device (two ranks on one
   GPU use gloo: NCCL refuses two ranks on one device); wall time of each.
4. Retraining its best arch (``train=quick``): 1 process amp off, bf16, and 2 processes.

The data: ``--data`` (a folder of class folders of audio), else the bundled set made with
``melnas-synth`` (``--quick``: 4 classes x 12 files). The cache is prepared once before the timed
runs; the latency table is measured cheaply (3 repeats) and shared, so the first search
also pays for most of the table's measurements (its row says so).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_supernet import bench_space, throughput  # noqa: E402
from nas.io.registry import build_space  # noqa: E402
from nas.runtime import resolve_device  # noqa: E402

Row = tuple[str, str, str]  # (check, setting, figure)


def run(command: list[str], log: Path, timeout: float) -> tuple[float, bool]:
    """Wall seconds and success of ``command`` (output to ``log``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    with log.open("w") as fh:
        try:
            ok = subprocess.run(command, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
    return time.perf_counter() - start, ok


def module(name: str, *args: str, processes: int = 1) -> list[str]:
    launch = [sys.executable]
    if processes > 1:
        launch += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return [*launch, "-m", name, *args]


def timed_row(check: str, setting: str, command: list[str], log: Path, timeout: float) -> Row:
    seconds, ok = run(command, log, timeout)
    return check, setting, f"{seconds:.1f} s" if ok else f"FAILED after {seconds:.0f} s (see {log})"


def cuda_tests(work: Path) -> Row:
    log = work / "pytest_cuda.log"
    seconds, ok = run([sys.executable, "-m", "pytest", "-q", "tests/test_cuda.py"], log, 600)
    last = log.read_text().strip().splitlines()[-1:] or ["no output"]
    return "tests/test_cuda.py", "pytest -q", f"{last[0]} ({seconds:.0f} s)" + ("" if ok else " FAILED")


def step_throughput(device: torch.device, amps: list[str], quick: bool) -> list[Row]:
    rows: list[Row] = []
    spaces = ["enas_macro"] if quick else ["mobilenetv3", "enas_macro"]
    batch = 8 if quick else 128
    for name in spaces:
        space = build_space(name, **({"num_layers": 4, "filters": 12} if quick else {}))
        for amp in amps:
            timings = bench_space(space, archs=1 if quick else 4, rounds=1 if quick else 5, batch=batch,
                                  input_shape=(1, 64, 63), num_classes=10, device=device, seed=0, amp=amp)
            sup = throughput(batch, [s for _, t in timings for s in t.supernet])
            sta = throughput(batch, [s for _, t in timings for s in t.standalone])
            rows.append((f"train step, {name}", f"amp {amp}, batch {batch}",
                         f"supernet {sup:.0f}/s, standalone {sta:.0f}/s"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda | cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every step runs")
    parser.add_argument("--data", type=Path, default=None, help="audio class folders (default: generated)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=None, help="search trainer.epochs (default: experiment=quick's)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per step")
    args = parser.parse_args()
    device = resolve_device(args.device)
    work = args.work or Path(tempfile.mkdtemp(prefix="melnas_gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MELNAS_CACHE"] = str(work / "melnas_cache")  # a fresh, shared latency table
    amps = ["off", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    print(f"gpu_check on {device} ({name}), torch {torch.__version__}, work dir {work}", flush=True)

    rows: list[Row] = [cuda_tests(work)]
    print(*rows[-1], sep=" | ", flush=True)
    rows += step_throughput(device, amps, args.quick)
    print(*rows[-1], sep=" | ", flush=True)

    data = args.data
    if data is None:
        data = work / "audio"
        # --quick: 4 classes x 12 files, enough train windows for experiment=quick's batch of 64;
        # else the bundled set itself, so the figures are those of the demo's search
        sizing = ["synth.files_per_class=12", "synth.classes=[piano,drums,bass,flute]"] if args.quick else []
        run(module("experiments.synth", f"synth.out_dir={data}", *sizing, "progress=false",
                   f"hydra.run.dir={work / 'synth'}"), work / "synth.log", args.timeout)
    common = [f"data.root={data}", f"data.cache_dir={work / 'cache'}"]
    run(module("experiments.prepare", *common, "progress=false", f"hydra.run.dir={work / 'prepare'}"),
        work / "prepare.log", args.timeout)
    search = [*common, "experiment=quick", f"trainer.device={device.type}", "trainer.progress=false",
              "latency_table.warmup=1", "latency_table.repeats=3", "latency_table.calibration_archs=1"]
    if args.epochs is not None:
        search.append(f"trainer.epochs={args.epochs}")
    if args.quick:
        search += ["trainer.epochs=1", "trainer.controller_steps=2", "trainer.archs_per_step=2",
                   "trainer.final.num_samples=2", "trainer.final.top_k=1"]
    runs = [("1 process, amp off (builds the latency table)", 1, "off"), ("1 process, amp bf16", 1, "bf16"),
            ("2 processes on one device, amp off", 2, "off")]
    for i, (label, processes, amp) in enumerate(runs):
        rows.append(timed_row("quick search", label, module(
            "experiments.search", *search, f"trainer.amp={amp}", f"hydra.run.dir={work / f'search{i}'}",
            processes=processes), work / f"search{i}.log", args.timeout))
        print(*rows[-1], sep=" | ", flush=True)

    arch = work / "search0" / "best_arch.json"
    train = [f"data.cache_dir={work / 'cache'}", f"arch={arch if arch.is_file() else 'mobilenetv3_small'}",
             "train=quick", f"device={device.type}", "latency_measure.repeats=5"]
    if args.quick:
        train += ["train.epochs=1", "train.batch_size=16"]
    for i, (label, processes, amp) in enumerate(
            [("1 process, amp off", 1, "off"), ("1 process, amp bf16", 1, "bf16"), ("2 processes, amp off", 2, "off")]):
        rows.append(timed_row("quick retraining", label, module(
            "experiments.train", *train, f"amp={amp}", f"hydra.run.dir={work / f'train{i}'}", processes=processes),
            work / f"train{i}.log", args.timeout))
        print(*rows[-1], sep=" | ", flush=True)

    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print("\nsummary" + (" (--quick: tiny sizes, figures only show that each step runs)" if args.quick else ""))
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    failed = [r for r in rows if "FAILED" in r[2]]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
