"""melnas-export: a trained model.pt as TorchScript, and as ONNX when onnx is installed.

    melnas-export outputs/train/<date>/<time>/model.pt              # next to the model
    melnas-export model.pt --out deploy/ --format onnx

Each export is checked against PyTorch on random inputs before it is reported.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from experiments.cli import run_cli
from nas.evaluate.export import (
    ExportCheck,
    OnnxUnavailable,
    export_onnx,
    export_torchscript,
)
from nas.io.model_file import load_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="melnas-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model.pt written by melnas-train")
    parser.add_argument("--out", help="output folder (default: the model's folder)")
    parser.add_argument(
        "--format", choices=["all", "torchscript", "onnx"], default="all",
        help="all (default) = TorchScript, plus ONNX when the onnx package is installed",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    return parser.parse_args(argv)


def _report(kind: str, check: ExportCheck) -> None:
    diff = "not run" if math.isnan(check.max_abs_diff) else f"max |diff| {check.max_abs_diff:.2e}"
    length = "any clip length" if check.variable_length else "the trained clip length only"
    print(f"{kind}: {check.path}  (checked with {check.verified_by}: {diff}; accepts {length})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli("export", lambda: export(args))


def export(args: argparse.Namespace) -> int:
    trained = load_model(args.model)
    out = Path(args.out) if args.out else Path(args.model).parent
    stem = Path(args.model).stem
    if args.format in ("all", "torchscript"):
        _report("TorchScript", export_torchscript(trained, out / f"{stem}.torchscript.pt"))
    if args.format in ("all", "onnx"):
        try:
            _report("ONNX", export_onnx(trained, out / f"{stem}.onnx", opset=args.opset))
        except OnnxUnavailable as error:
            print(f"melnas-export: ONNX skipped: {error}", file=sys.stderr)
            if args.format == "onnx":
                return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
