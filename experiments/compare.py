"""melnas-compare: one table and a Pareto plot of every arch in some search and train runs.

    melnas-compare outputs/search/<date>/<time> outputs/train/<date>/<time> --out results
    melnas-compare outputs/demo/<date>/<time> --out results   # every run below a folder
    melnas-compare outputs/train/* outputs/adapt/* --out results --remeasure 5
"""

from __future__ import annotations

import argparse
import sys

from experiments.cli import run_cli
from nas.evaluate.compare import LATENCY_TOLERANCE, compare_runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="melnas-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="search or train run directories, or folders holding them")
    parser.add_argument("--out", required=True, help="folder for compare.md, compare.csv and pareto.png")
    parser.add_argument(
        "--remeasure", type=int, default=0, metavar="ROUNDS",
        help="time the trained models again, side by side: ROUNDS rounds, each timing all of them interleaved "
        "over >= 2 s (their runs' latencies were taken at different times, under different loads); "
        "0 = use the runs' figures",
    )
    parser.add_argument("--runtime", choices=["auto", "onnxruntime", "torchscript", "torch"], default="auto",
                        help="with --remeasure: the runtime model.pt files are timed in (auto: onnxruntime on "
                             "the CPU); exported .onnx files (int8 rows) always run in onnxruntime")
    parser.add_argument("--latency-tolerance", type=_fraction, default=LATENCY_TOLERANCE, metavar="FRACTION",
                        help="latencies within this fraction of each other count as equal on the Pareto front "
                             f"(timing noise; default {LATENCY_TOLERANCE}; 0: exact)")
    return parser.parse_args(argv)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli("compare", lambda: compare(args))


def compare(args: argparse.Namespace) -> int:
    latency = None
    if args.remeasure:
        from nas.latency.measure import LatencySettings

        latency = LatencySettings(runtime=args.runtime)
    result = compare_runs(args.runs, args.out, remeasure_rounds=args.remeasure, latency=latency,
                          latency_tolerance=args.latency_tolerance)
    print(result.markdown)
    print()
    print(f"table: {result.markdown_path} and {result.csv_path}")
    print(f"Pareto plot: {result.plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
