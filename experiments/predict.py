"""melnas-predict: class probabilities for audio files with a trained model.pt or an exported ONNX file.

    melnas-predict outputs/train/<date>/<time>/model.pt song.wav take2.flac
    melnas-predict model.pt *.wav --windows --json > predictions.json
    melnas-predict outputs/train/<date>/<time>/model.int8.onnx song.wav   # the file you ship, in ONNX Runtime

A file that cannot be read is reported on stderr with the reason (and under "failed" in
--json) and the others are still predicted; the exit status is 1 when any file failed,
as with cp or grep, so a script that runs it over a folder notices the files it lost.
"""

from __future__ import annotations

import argparse
import json
import sys

from experiments.cli import run_cli
from nas.evaluate.predict import format_prediction, load_classifier, predict_files
from nas.runtime import resolve_device


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="melnas-predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model.pt written by melnas-train (or melnas-adapt), or a .onnx file written "
                                      "by melnas-export (fp32 or int8; run in ONNX Runtime)")
    parser.add_argument("files", nargs="+", help="audio files (any format melnas-prepare reads)")
    parser.add_argument("--windows", action="store_true", help="also give the probabilities of every window")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--top-k", type=int, default=3, help="classes shown per file in text output (default 3)")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per forward pass (default 64)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu; a model.pt only)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli("predict", lambda: predict(args))


def predict(args: argparse.Namespace) -> int:
    classifier = load_classifier(args.model, device=resolve_device(args.device), batch_size=args.batch_size)
    predictions = []
    for prediction in predict_files(classifier, args.files):
        predictions.append(prediction)
        if not prediction.ok:
            print(f"melnas-predict: skipped {prediction.path}: {prediction.error}", file=sys.stderr)
        elif not args.json:
            print(format_prediction(prediction, top_k=args.top_k, windows=args.windows), flush=True)
    if args.json:
        document = {
            "model": args.model,
            "class_names": classifier.class_names,
            "files": [p.to_json_dict(windows=args.windows) for p in predictions if p.ok],
            "failed": [p.to_json_dict(windows=False) for p in predictions if not p.ok],
        }
        print(json.dumps(document, indent=2))
    failed = sum(not p.ok for p in predictions)
    if failed:
        print(f"melnas-predict: {failed} of {len(predictions)} files could not be read", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
