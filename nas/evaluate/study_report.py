"""The report of a multi-seed study: study.md, study.csv, study_summary.json, study.png.

Reads only what the retrainings wrote (each train dir's ``metrics.json``); the statistics
are in ``nas.evaluate.study_stats``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from nas.evaluate.study_stats import (
    METRICS,
    Bootstrap,
    LatencyMatched,
    PairedDifference,
    ScoreAgainstTest,
    SeedsNeeded,
    StudyRow,
    latency_line,
    latency_matched,
    paired_differences,
    score_against_test,
    seeds_needed,
    summary_table,
    training_spreads,
)
from nas.io.atomic import atomic_write_text

SEEDS_NEEDED_METRICS = ("accuracy", "recording_accuracy")
LABELS = {"accuracy": "test acc (window)", "recording_accuracy": "test acc (recording)",
          "f1_macro": "macro F1", "latency_ms": "latency ms"}


@dataclass(frozen=True)
class StudyReport:
    markdown: str
    markdown_path: Path
    csv_path: Path
    summary_path: Path
    plot_path: Path


def read_row(run_dir: str | Path, *, method: str, seed: int, train_seed: int) -> StudyRow:
    """The study row of one retraining (its ``metrics.json``)."""
    path = Path(run_dir) / "metrics.json"
    metrics = json.loads(path.read_text())
    missing = [m for m in METRICS if m not in metrics]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: re-evaluate the model with melnas-eval")
    runtime = metrics.get("latency_runtime", {"name": "torch (before latency runtimes)"})
    return StudyRow(method, seed, train_seed, *(float(metrics[m]) for m in METRICS), run_dir=str(run_dir),
                    latency_runtime=runtime_label(runtime))


def runtime_label(described: Mapping[str, Any]) -> str:
    """``"onnxruntime fp32"`` from a runtime's ``describe()`` (as metrics.json stores it)."""
    return " ".join(str(described[k]) for k in ("name", "precision") if k in described)


def retime_side_by_side(rows: Sequence[StudyRow], rounds: int) -> list[StudyRow]:
    """The rows with every model timed again now, side by side: ``rounds`` rounds, each timing
    all of them interleaved over 2 s (the median over rounds;
    ``nas.latency.side_by_side``, the default ``latency_measure`` settings). Latencies taken
    at the end of each retraining, minutes apart, are not comparable on a shared machine:
    the very same preset network read 0.14, 0.14 and 0.22 ms in three of them."""
    from nas.latency.measure import LatencySettings  # loads torch: only when asked
    from nas.latency.side_by_side import latency_side_by_side

    latency = LatencySettings()
    models = list(dict.fromkeys(Path(row.run_dir) / "model.pt" for row in rows))  # a model read by several rows: once
    times = dict(zip(models, latency_side_by_side(models, rounds=rounds, latency=latency)))
    label = runtime_label(latency.cpu_runtime().describe())
    return [replace(row, latency_ms=times[Path(row.run_dir) / "model.pt"], latency_runtime=label) for row in rows]


def check_one_runtime(rows: Sequence[StudyRow]) -> None:
    """Refuse to average latencies timed in different runtimes (a study resumed across versions)."""
    runtimes = sorted({row.latency_runtime for row in rows})
    if len(runtimes) > 1:
        first = {rt: next(r.run_dir for r in rows if r.latency_runtime == rt) for rt in runtimes}
        raise ValueError(
            "the study's retrainings were timed in different runtimes (" +
            "; ".join(f"{rt}: e.g. {run}" for rt, run in first.items()) +
            "): re-time the odd ones with melnas-eval model=<run>/model.pt, or start the study in a new run dir"
        )


def write_study_report(rows: Sequence[StudyRow], out_dir: str | Path, *, baseline: str,
                       bootstrap: Bootstrap = Bootstrap(), budget: dict[str, Any] | None = None,
                       resolve_effect: float = 0.01,
                       winner_scores: Mapping[str, Mapping[int, float]] | None = None) -> StudyReport:
    """Write the four report files into ``out_dir`` and return the markdown table.

    ``resolve_effect``: the accuracy difference whose search seeds needed the report gives.
    ``winner_scores``: method -> search seed -> its winner's score on the supernet the
    seed's searches share (``best_arch.json``); the report then sets it against test accuracy."""
    if not rows:
        raise ValueError("the study has no finished retrainings to report")
    check_one_runtime(rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = summary_table(rows)
    diffs = {metric: paired_differences(rows, metric, baseline, bootstrap) for metric in METRICS}
    train_std = training_spreads(rows, "accuracy")
    matched = latency_matched(rows, baseline, bootstrap)
    needed = [(d, n) for metric in SEEDS_NEEDED_METRICS for d in diffs[metric]
              if (n := seeds_needed(d, resolve_effect)) is not None]
    against = score_against_test(winner_scores or {}, rows, baseline, bootstrap)

    csv_path = out_dir / "study.csv"
    fields = list(table[0]) + [f"{m}_diff_vs_{baseline}{s}" for m in METRICS for s in ("", "_low", "_high")]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for entry in table:
        writer.writerow({**entry, **_diff_columns(entry["method"], diffs, baseline)})
    atomic_write_text(csv_path, buffer.getvalue())

    markdown = (_markdown(table, diffs, train_std, baseline, bootstrap, budget, methods_shared_by_rounds(rows))
                + _seeds_needed_markdown(needed, baseline) + _matched_markdown(matched, baseline)
                + _score_markdown(against, baseline))
    markdown_path = out_dir / "study.md"
    atomic_write_text(markdown_path, markdown)

    summary_path = out_dir / "study_summary.json"
    atomic_write_text(summary_path, json.dumps({
        "baseline": baseline,
        "bootstrap": {**asdict(bootstrap), "method": "percentile", "description": bootstrap.describe()},
        "budget": budget or {},
        "methods": table,
        "training_seed_std_accuracy": {k: (None if math.isnan(v) else v) for k, v in train_std.items()},
        "paired_differences": [_diff_json(d) for metric in METRICS for d in diffs[metric]],
        "seeds_needed": [{"method": d.method, "baseline": d.baseline, "metric": d.metric, "observed_mean": d.mean,
                          "confidence": d.confidence, **asdict(n)} for d, n in needed],
        "latency_matched_accuracy": None if matched is None else {
            "line": asdict(matched.line),
            "methods": {m: asdict(s) for m, s in matched.spreads.items()},
            "paired_differences": [_diff_json(d) for d in matched.differences],
        },
        "supernet_score_against_test": [{"method": a.score.method, "score": _diff_json(a.score),
                                         "test": _diff_json(a.test),
                                         **{key: None if math.isnan(value) else value for key, value in (
                                             ("correlation", a.correlation), ("correlation_low", a.correlation_low),
                                             ("correlation_high", a.correlation_high))}}
                                        for a in against],
        "runs": [asdict(r) for r in rows],
    }, indent=2) + "\n")

    plot_path = plot_study(rows, out_dir / "study.png")
    return StudyReport(markdown, markdown_path, csv_path, summary_path, plot_path)


def _diff_columns(method: str, diffs: dict[str, list[PairedDifference]], baseline: str) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for metric, found in diffs.items():
        match = next((d for d in found if d.method == method), None)
        for suffix, value in (("", "mean"), ("_low", "low"), ("_high", "high")):
            out[f"{metric}_diff_vs_{baseline}{suffix}"] = getattr(match, value) if match else ""
    return out


def _diff_json(diff: PairedDifference) -> dict[str, Any]:
    return {"method": diff.method, "baseline": diff.baseline, "metric": diff.metric, "mean": diff.mean,
            "low": diff.low, "high": diff.high, "confidence": diff.confidence,
            "per_seed": {str(s): v for s, v in diff.per_seed.items()}}


def methods_shared_by_rounds(rows: Sequence[StudyRow]) -> list[str]:
    """Methods whose every search seed reads the same runs (a preset retrained with a fixed
    ``study.train_seeds``): their spread over search seeds is 0 whatever their trainings' noise."""
    runs: dict[str, dict[int, set[str]]] = {}
    for row in rows:
        runs.setdefault(row.method, {}).setdefault(row.seed, set()).add(row.run_dir)
    return [method for method, by_seed in runs.items()
            if len(by_seed) > 1 and len({frozenset(dirs) for dirs in by_seed.values()}) == 1]


def _markdown(table: list[dict[str, Any]], diffs: dict[str, list[PairedDifference]], train_std: dict[str, float],
              baseline: str, bootstrap: Bootstrap, budget: dict[str, Any] | None, shared: Sequence[str]) -> str:
    lines = ["| method | seeds | " + " | ".join(LABELS[m] for m in METRICS) + " |",
             "|---|---|" + "---|" * len(METRICS)]
    for entry in table:
        cells = [_pm(entry[f"{m}_mean"], entry[f"{m}_std"], m) for m in METRICS]
        lines.append(f"| {entry['method']} | {entry['seeds']} | " + " | ".join(cells) + " |")
    lines += ["", f"Paired difference against `{baseline}` (per search seed; mean [{bootstrap.confidence:.0%} CI]):", "",
              "| method | n | " + " | ".join(LABELS[m] for m in METRICS) + " |",
              "|---|---|" + "---|" * len(METRICS)]
    for entry in table:
        found = [next((d for d in diffs[m] if d.method == entry["method"]), None) for m in METRICS]
        if found[0] is None:
            continue
        cells = [_interval(d) if d else "" for d in found]
        lines.append(f"| {entry['method']} | {found[0].n} | " + " | ".join(cells) + " |")
    noise = ", ".join(f"{m} {v:.4f}" for m, v in train_std.items() if not math.isnan(v))
    lines += ["", f"Mean +- std over search seeds (each seed: the mean of its training seeds). Interval: {bootstrap.describe()}."]
    if noise:
        lines.append(f"Std of test accuracy over training seeds (mean over search seeds): {noise}.")
    if shared:
        lines.append(f"{', '.join(shared)}: the same trainings in every search seed's round, so its +- and its "
                     "interval leave out their training noise: read them with its std over training seeds.")
    if budget:
        lines.append("Budget: " + ", ".join(f"{k}={v}" for k, v in budget.items()) + ".")
    return "\n".join(lines) + "\n"


def _seeds_needed_markdown(needed: Sequence[tuple[PairedDifference, SeedsNeeded]], baseline: str) -> str:
    """How many search seeds each accuracy comparison would need, read off this study's noise."""
    if not needed:
        return ""
    effect = needed[0][1].effect
    lines = ["", f"Search seeds needed: the fewest at which a paired t interval ({needed[0][0].confidence:.0%}) of "
             f"the difference against `{baseline}` would exclude 0 with probability {needed[0][1].power:.0%}, if the "
             "per-seed std of the differences stayed as observed here (a sample size for the next study, not a "
             "test of this one).", "",
             f"| method | metric | per-seed std of the difference | for a difference of its mean | for {effect:+.4f} |",
             "|---|---|---|---|---|"]
    for diff, n in needed:
        lines.append(f"| {diff.method} | {LABELS[diff.metric]} | {n.per_seed_std:.4f} | "
                     f"{_count(n.at_observed)} ({diff.mean:+.4f}) | {_count(n.at_effect)} |")
    return "\n".join(lines) + "\n"


def _count(seeds: int | None) -> str:
    return "-" if seeds is None else str(seeds)


def _matched_markdown(matched: LatencyMatched | None, baseline: str) -> str:
    """The latency-matched comparison: accuracy minus the searched winners' accuracy-latency line."""
    if matched is None:
        return ""
    line = matched.line
    lines = ["", "Accuracy at matched latency: test accuracy (window) minus the least-squares line of the "
             f"searched winners, accuracy = {line.intercept:.4f} + {line.slope_per_ms:.4f} x latency ms "
             f"(r = {line.correlation:.2f}, {line.n} winners; fitted on the models it adjusts). Above 0: "
             "more accurate than a winner of the same latency.", "",
             f"| method | seeds | above the line | minus `{baseline}` [CI] |", "|---|---|---|---|"]
    for method, s in matched.spreads.items():
        diff = next((d for d in matched.differences if d.method == method), None)
        cell = _interval(diff) if diff else ""
        lines.append(f"| {method} | {s.n} | {s.mean:+.4f} +- {s.std:.4f} | {cell} |")
    return "\n".join(lines) + "\n"


def _score_markdown(against: Sequence[ScoreAgainstTest], baseline: str) -> str:
    """Each controller's winners against the baseline's: on their common supernet, then retrained."""
    if not against:
        return ""
    lines = ["", "Supernet score against test accuracy: each winner's score in its search's final phase (the "
             "supernet its seed's searches share, on the whole val split, with the referees or the refit if set; "
             f"`best_arch.json`) minus that of `{baseline}`'s winner, next to the retrained models' difference on "
             "the same seeds; r: the correlation of the two over seeds, with its Fisher interval. A controller whose "
             "winners score higher and do not retrain better is held back by the score it climbs (its bias or its "
             "noise), not by how well it climbs it. (Under a soft latency reward the winners are picked by the "
             "reward, which also weighs latency.)", "",
             f"| method | seeds | supernet score minus `{baseline}` [CI] | test acc (window) minus `{baseline}` [CI] | r [CI] |",
             "|---|---|---|---|---|"]
    for a in against:
        r = "-" if math.isnan(a.correlation) else f"{a.correlation:+.2f}"
        if not math.isnan(a.correlation_low):
            r += f" [{a.correlation_low:+.2f}, {a.correlation_high:+.2f}]"
        lines.append(f"| {a.score.method} | {a.test.n} | {_interval(a.score)} | {_interval(a.test)} | {r} |")
    return "\n".join(lines) + "\n"


def _interval(diff: PairedDifference) -> str:
    return f"{diff.mean:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}]"


def _pm(mean: float, std: float, metric: str) -> str:
    return f"{mean:.3f} +- {std:.3f}" if metric == "latency_ms" else f"{mean:.4f} +- {std:.4f}"


def plot_study(rows: Sequence[StudyRow], path: str | Path) -> Path:
    """Every model on the accuracy-latency plane (small dots) and each method's mean over
    search seeds (a large marker with +-1 std bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    methods = list(dict.fromkeys(r.method for r in rows))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, method in enumerate(methods):
        color = f"C{i}"
        mine = [r for r in rows if r.method == method]
        ax.scatter([r.latency_ms for r in mine], [r.accuracy for r in mine], s=18, alpha=0.5, color=color)
        for r in mine:
            ax.annotate(str(r.seed), (r.latency_ms, r.accuracy), fontsize=6, color=color,
                        xytext=(2, 2), textcoords="offset points")
        table = {e["method"]: e for e in summary_table(mine)}[method]
        ax.errorbar(table["latency_ms_mean"], table["accuracy_mean"], xerr=table["latency_ms_std"],
                    yerr=table["accuracy_std"], fmt="o", markersize=9, color=color, capsize=3,
                    label=f"{method} (n={table['seeds']})")
    line = latency_line(rows)
    if line is not None:
        ends = [min(r.latency_ms for r in rows), max(r.latency_ms for r in rows)]
        ax.plot(ends, [line.expected(x) for x in ends], "--", color="0.5", linewidth=1,
                label=f"searched winners' line (r={line.correlation:.2f})")
    ax.set_xlabel("measured latency (ms, batch 1)")
    ax.set_ylabel("test accuracy (per window)")
    ax.set_title("study: every seed (dots, labelled by seed) and method means (+-1 std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
