"""The data card of a prepared data set: per class and split, how many recordings,
windows, groups (speakers, source recordings) and minutes, the clip-length
distribution, and warnings about classes with too few recordings in a split.
``prepare`` writes it as ``data_card.json`` and ``data_card.md`` and prints it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from nas.data.splits import SPLITS

# Below this many recordings of a class in val or test, its accuracy there moves in
# steps of 20% or more: the card warns.
MIN_RECORDINGS = 5
PERCENTILES = {"min": 0, "p10": 10, "median": 50, "p90": 90, "max": 100}


def build_card(*, labels: Sequence[str], groups: Sequence[str], splits: Sequence[str],
               seconds: Sequence[float], windows: Sequence[int], class_names: Sequence[str],
               data_format: Mapping[str, Any], folds: Mapping[str, Any] | None) -> dict[str, Any]:
    """The card as plain data (one item per usable recording in each sequence)."""
    per: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"recordings": 0, "windows": 0, "groups": set(), "seconds": 0.0})
    lengths: dict[str, list[float]] = defaultdict(list)
    for label, group, split, length, count in zip(labels, groups, splits, seconds, windows):
        for key in ((label, split), ("total", split)):
            cell = per[key]
            cell["recordings"] += 1
            cell["windows"] += int(count)
            cell["groups"].add(group)
            cell["seconds"] += float(length)
        lengths[label].append(float(length))
        lengths["total"].append(float(length))

    def row(name: str) -> dict[str, Any]:
        cells = {}
        for split in SPLITS:
            cell = per.get((name, split), {"recordings": 0, "windows": 0, "groups": set(),
                                          "seconds": 0.0})
            cells[split] = {"recordings": cell["recordings"], "windows": cell["windows"],
                            "groups": len(cell["groups"]),
                            "minutes": round(cell["seconds"] / 60, 3)}
        values = np.asarray(lengths[name])
        cells["clip_seconds"] = {key: round(float(np.percentile(values, q)), 3)
                                 for key, q in PERCENTILES.items()}
        return cells

    classes = {name: row(name) for name in class_names}
    used = [split for split in SPLITS if per.get(("total", split), {}).get("recordings")]
    warnings = []
    for split in used:
        counts = {name: classes[name][split]["recordings"] for name in class_names}
        if split == "train":
            thin = [name for name, count in counts.items() if count == 0]
            if thin:
                warnings.append(f"{len(thin)} class(es) have no recording in train, so the "
                                f"model cannot learn them: {', '.join(thin)}")
            continue
        thin = [f"{name} ({count})" for name, count in counts.items() if count < MIN_RECORDINGS]
        if thin:
            warnings.append(f"{len(thin)} class(es) have fewer than {MIN_RECORDINGS} "
                            f"recordings in {split}, too few to measure them there: "
                            f"{', '.join(thin)}; add recordings, or change data.splits "
                            "(with folds, the data set fixes a fold's size)")
    return {"format": dict(data_format), "folds": dict(folds) if folds else None,
            "classes": classes, "total": row("total"), "warnings": warnings}


def _triple(cells: Mapping[str, Any], key: str, fmt: str = "{}") -> str:
    return "/".join(fmt.format(cells[split][key]) for split in SPLITS)


def card_lines(card: Mapping[str, Any]) -> list[str]:
    """The card as a fixed-width table (the summary prints it), warnings last."""
    options = {k: v for k, v in card["format"].items() if k not in ("name", "reader")}
    lines = [f"format: {card['format'].get('name')}"
             + (f" {options}" if options else "") + _fold_text(card.get("folds"))]
    header = (f"{'class':<20}{'recordings':>18}{'windows':>20}{'groups':>16}"
              f"{'minutes':>22}{'clip s (min/median/max)':>26}")
    lines += [header, f"{'':<20}{'train/val/test':>18}{'train/val/test':>20}"
                      f"{'train/val/test':>16}{'train/val/test':>22}"]
    rows = list(card["classes"].items()) + [("total", card["total"])]
    for name, cells in rows:
        clip = cells["clip_seconds"]
        lines.append(f"{name:<20}{_triple(cells, 'recordings'):>18}"
                     f"{_triple(cells, 'windows'):>20}{_triple(cells, 'groups'):>16}"
                     f"{_triple(cells, 'minutes', '{:.1f}'):>22}"
                     f"{clip['min']:>10.2f}/{clip['median']:.2f}/{clip['max']:.2f}")
    lines += [f"WARNING: {warning}" for warning in card["warnings"]]
    return lines


def card_markdown(card: Mapping[str, Any], title: str) -> str:
    """``data_card.md``: the same figures as a Markdown table."""
    options = {k: v for k, v in card["format"].items() if k not in ("name", "reader")}
    lines = [f"# Data card: {title}", "",
             f"Format: `{card['format'].get('name')}`" + (f" {options}" if options else "")
             + _fold_text(card.get("folds")) + ".", "",
             "| class | split | recordings | windows | groups | minutes |",
             "|---|---|---:|---:|---:|---:|"]
    rows = list(card["classes"].items()) + [("**total**", card["total"])]
    for name, cells in rows:
        for split in SPLITS:
            cell = cells[split]
            lines.append(f"| {name} | {split} | {cell['recordings']} | {cell['windows']} | "
                         f"{cell['groups']} | {cell['minutes']:.1f} |")
    lines += ["", "Clip lengths in seconds:", "",
              "| class | " + " | ".join(PERCENTILES) + " |",
              "|---|" + "---:|" * len(PERCENTILES)]
    for name, cells in rows:
        lines.append(f"| {name} | " + " | ".join(f"{cells['clip_seconds'][key]:.2f}"
                                                 for key in PERCENTILES) + " |")
    if card["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {warning}" for warning in card["warnings"]]
    return "\n".join(lines) + "\n"


def _fold_text(folds: Mapping[str, Any] | None) -> str:
    if not folds:
        return ""
    val = (f"val fold {folds['val_fold']}" if folds.get("val_fold") is not None
           else "val drawn from the other folds")
    return f"; folds {folds['folds']}, test fold {folds['test_fold']}, {val}"
