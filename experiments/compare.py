"""melnas-compare: one table and a Pareto plot of every arch in some search and train runs.

    melnas-compare outputs/search/<date>/<time> outputs/train/<date>/<time> --out results
    melnas-compare outputs/demo/<timestamp> --out results   # every run below a folder
"""

from __future__ import annotations

import argparse
import sys

from nas.compare import compare_runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="melnas-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="search or train run directories, or folders holding them")
    parser.add_argument("--out", required=True, help="folder for compare.md, compare.csv and pareto.png")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = compare_runs(args.runs, args.out)
    except ValueError as error:
        print(f"melnas-compare: {error}", file=sys.stderr)
        return 2
    print(result.markdown)
    print()
    print(f"table: {result.markdown_path} and {result.csv_path}")
    print(f"Pareto plot: {result.plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
