"""melnas-export: a trained model.pt as TorchScript, and as ONNX when onnx is installed.

    melnas-export outputs/train/<date>/<time>/model.pt              # next to the model
    melnas-export model.pt --out deploy/ --format onnx
    melnas-export model.pt --int8                    # also model.int8.onnx (static, QDQ)

Each export is checked against PyTorch on random inputs before it is reported; the
int8 file by its top-1 agreement with the float model on the test windows.
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
from nas.evaluate.quantized import CALIBRATION_WINDOWS, export_int8
from nas.io.model_file import load_model
from nas.latency.quantize import CALIBRATION_METHODS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="melnas-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model.pt written by melnas-train")
    parser.add_argument("--out", help="output folder (default: the model's folder)")
    parser.add_argument(
        "--format", choices=["all", "torchscript", "onnx"], default="all",
        help="all (default) = TorchScript, plus ONNX when the onnx package is installed",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--int8", action="store_true",
                        help="also write <model>.int8.onnx: static int8 (QDQ, per-channel weights), calibrated "
                             "on train windows of the model's cache")
    parser.add_argument("--calibration", choices=CALIBRATION_METHODS, default="minmax",
                        help="int8 activation ranges: minmax (default), entropy or percentile")
    parser.add_argument("--calibration-windows", type=int, default=CALIBRATION_WINDOWS,
                        help=f"train windows to calibrate on (default {CALIBRATION_WINDOWS})")
    parser.add_argument("--cache", help="prepared cache for int8 calibration (default: the model's own)")
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
    if args.int8:
        check = export_int8(trained, out / f"{stem}.int8.onnx", cache_dir=args.cache, method=args.calibration,
                            calibration_windows=args.calibration_windows)
        print(f"ONNX int8: {check.path}  ({check.method} calibration on {check.calibration_windows} train windows; "
              f"runs in onnxruntime; same top-1 class as the float model on {check.agreement:.1%} of "
              f"{check.checked_windows} test windows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
