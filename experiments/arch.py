"""melnas-arch: describe architectures: per-unit parameters, MACs and output shapes, and totals.

Examples::

    melnas-arch --space mobilenetv3 --preset mobilenetv3_large --num-classes 1000 --input 3x224x224
    melnas-arch --arch outputs/search/2024-05-01/12-00-00/best_arch.json --data-cache data/cache/instruments
    melnas-arch --space enas_macro --random 3 --seed 1 --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from experiments.cli import run_cli
from nas.evaluate.cost import ModelSummary, model_summary
from nas.io.model_file import read_checkpoint
from nas.io.registry import available_spaces, build_space
from nas.latency.measure import DEFAULT_NUM_CLASSES, ModelInput, resolve_model_input
from search_spaces.base import Arch, SearchSpace


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """``"1x64x63"`` -> ``(1, 64, 63)`` (channels x n_mels x frames)."""
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--input must be CxHxW with positive sizes, e.g. 1x64x63; got {text!r}")
    return shape  # type: ignore[return-value]


def parse_override(text: str) -> tuple[str, Any]:
    """``"filters=16"`` -> ``("filters", 16)`` (the value read as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set needs KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="melnas-arch",
        description="Per-unit parameters, MACs and output shapes of an architecture, and totals.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--preset", metavar="NAME", help="a named preset of --space")
    what.add_argument(
        "--arch", metavar="FILE", type=Path,
        help="an arch file: best_arch.json, top_archs.json (every entry), any arch JSON, or a model.pt",
    )
    what.add_argument("--random", metavar="N", type=int, help="N random archs of --space")
    parser.add_argument("--space", help=f"search space ({', '.join(available_spaces())}); default: the arch file's")
    parser.add_argument(
        "--set", metavar="KEY=VALUE", type=parse_override, action="append", default=[],
        help="override a space setting from conf/search_space/<space>.yaml (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    parser.add_argument("--num-classes", type=int, help=f"classifier outputs (default: --data-cache's, else {DEFAULT_NUM_CLASSES})")
    parser.add_argument(
        "--input", type=parse_input_shape, metavar="CxHxW",
        help="input shape without batch (default: --data-cache's, else 1x64x63: 64 mels x 63 frames)",
    )
    parser.add_argument("--data-cache", type=Path, metavar="DIR", help="take input shape and classes from a prepared cache")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _records_from_file(path: Path) -> list[dict[str, Any]]:
    """Arch records from a JSON arch file or a model.pt (each a dict holding ``space``/``choices``)."""
    if path.suffix == ".pt":
        ckpt = read_checkpoint(path)
        return [{**ckpt["arch"], "space_config": ckpt["space_config"],
                 "num_classes": ckpt["num_classes"], "input_shape": ckpt["input_shape"]}]
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read arch file {path}: {err}") from err
    records = data if isinstance(data, list) else [data]
    out = []
    for record in records:
        if isinstance(record, dict) and isinstance(record.get("arch"), dict):
            record = {**record, **record["arch"]}  # {"arch": {"space", "choices"}, ...} entries
        if not isinstance(record, dict) or "choices" not in record or "space" not in record:
            raise ValueError(f'{path}: expected arch JSON with "space" and "choices" (or a list of them)')
        out.append(record)
    if not out:
        raise ValueError(f"{path} holds no arch")
    return out


def _space_for(name: str | None, args: argparse.Namespace, *, config: dict | None = None) -> SearchSpace:
    overrides = dict(args.set)
    if config is not None:
        return build_space(config, **overrides)
    if name is None:
        raise ValueError(f"--space is needed with --preset and --random (one of {', '.join(available_spaces())})")
    return build_space(name, **overrides)


def resolve_archs(args: argparse.Namespace) -> tuple[list[tuple[SearchSpace, Arch]], int | None, tuple | None]:
    """The (space, arch) pairs to describe, plus classes and input shape stored with them (if any)."""
    if args.preset is not None:
        return [_space_for(args.space, args).preset(args.preset)], None, None
    if args.random is not None:
        if args.random < 1:
            raise ValueError(f"--random needs N >= 1, got {args.random}")
        space = _space_for(args.space, args)
        rng = np.random.default_rng(args.seed)
        return [(space, space.random_arch(rng)) for _ in range(args.random)], None, None
    pairs = []
    records = _records_from_file(args.arch)
    for record in records:
        if args.space is not None and args.space != record["space"]:
            raise ValueError(f"{args.arch} holds an arch of space {record['space']!r}, not --space {args.space!r}")
        space = _space_for(record["space"], args, config=record.get("space_config"))
        pairs.append((space, space.arch_from_json_dict(record)))
    stored = records[0]
    shape = tuple(stored["input_shape"]) if "input_shape" in stored else None
    return pairs, stored.get("num_classes"), shape


def resolve_input(args: argparse.Namespace, stored_classes: int | None, stored_shape: tuple | None) -> ModelInput:
    """Flags win, then --data-cache, then what an arch file stored, then the audio default."""
    if args.data_cache is not None:
        if not args.data_cache.is_dir():
            raise ValueError(f"--data-cache {args.data_cache} is not a folder: pass the data.cache_dir of melnas-prepare")
        stored_classes = stored_shape = None
    return resolve_model_input(
        data_cache=args.data_cache,
        num_classes=args.num_classes or stored_classes,
        input_shape=args.input or stored_shape,
    )


def format_summary(summary: ModelSummary) -> str:
    """A fixed-width table: one row per unit, then the totals of the whole model."""
    shape = "x".join(map(str, summary.input_shape))
    head = [
        f"space {summary.space}   input {shape}   classes {summary.num_classes}",
        f"arch  {summary.arch_string}",
    ]
    rows = [(u.key, f"{u.params:,}", f"{u.macs:,}", "x".join(map(str, u.output_shape)), str(u.num_inputs))
            for u in summary.layers]
    titles = ("unit", "params", "MACs", "output", "inputs")
    totals = ("total (whole model)", f"{summary.params:,}", f"{summary.macs:,}", "", "")
    widths = [max(len(r[i]) for r in [titles, totals, *rows]) for i in range(5)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]).rstrip()

    rule = "-" * sum(widths + [2 * (len(widths) - 1)])
    return "\n".join([*head, line(titles), rule, *map(line, rows), rule, line(totals)])


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_cli("arch", lambda: describe(args))


def describe(args: argparse.Namespace) -> None:
    pairs, stored_classes, stored_shape = resolve_archs(args)
    model_input = resolve_input(args, stored_classes, stored_shape)
    summaries = [
        model_summary(s, a, num_classes=model_input.num_classes, input_shape=model_input.input_shape)
        for s, a in pairs
    ]
    if args.json:
        data = [s.to_json_dict() for s in summaries]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=1))
    else:
        print("\n\n".join(format_summary(s) for s in summaries))


if __name__ == "__main__":
    main()
