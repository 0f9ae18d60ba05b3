"""Compare run outputs: one table of every arch, the accuracy-latency Pareto front, a plot.

Reads only what runs wrote, never a data set, and no model unless asked to re-time
them (``remeasure_rounds``, see ``nas.latency.side_by_side``):

- a **train dir** (``metrics.json`` from ``melnas-train`` / ``melnas-eval`` /
  ``melnas-adapt``): one row with test accuracy (per window and per recording), macro F1,
  params, MACs and *measured* latency (an adapted model's row reads ``retrained`` no: it
  was pruned and fine-tuned);
- a **search dir** (``top_archs.json``, else ``search_log.jsonl``): one row per final
  arch with its *proxy* accuracy (validation accuracy under the supernet's shared
  weights), the latency the lookup table *predicted*, and the search reward.

Proxy and test accuracies are not comparable (shared-weight accuracy ranks archs
only loosely: Kendall tau ~0.2 in CNN spaces, Sciuto et al. 2019), so the two kinds
of rows get separate Pareto fronts and separate panels of the plot. A search row whose
arch was retrained in one of the given runs is marked ``retrained``, and the retrained
row carries that arch's search reward.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from nas.evaluate.pareto import pareto_front
from nas.evaluate.run_dirs import find_run_dirs, is_train_dir, run_data, run_labels, warn_on_mixed_data

if TYPE_CHECKING:  # measure imports torch: only when asked to re-measure
    from nas.latency.measure import LatencySettings
from search_spaces.base import arch_hash

TEST = "test"
PROXY = "proxy"
# Latencies this close (a fraction of the larger) count as equal on the Pareto front: the
# latency ratio of two models moved by up to 1.8% (90th percentile) between three
# melnas-compare --remeasure 5 runs of the same 20 models (README).
LATENCY_TOLERANCE = 0.02


@dataclass
class Row:
    run: str  # the run directory, relative to the common parent of all runs
    origin: str  # the search controller (enas_lstm, evolution, random) or preset:<name>
    accuracy_kind: str  # "test" (trained standalone, or adapted) or "proxy" (shared weights, search only)
    arch_hash: str
    arch_string: str
    accuracy: float | None
    recording_accuracy: float | None = None  # test rows: per recording (mean of its windows' probabilities)
    f1_macro: float | None = None
    params: int | None = None
    macs: int | None = None
    latency_ms: float | None = None  # measured for test rows, predicted for proxy rows
    reward: float | None = None  # the search reward of this arch, where a search scored it
    retrained: bool = False
    pareto: bool = False  # on the front of its own kind (test or proxy)
    model_path: str | None = None  # the model.pt (or exported .onnx) of a test row, where known
    precision: str = "fp32"  # int8: a statically quantized ONNX file scored by melnas-eval
    latency_runtime: str | None = None  # test rows: what its run timed latency_ms in (metrics.json)
    space_config: dict[str, Any] | None = None  # the space's settings (width ...); None in runs older than it
    data: str | None = None  # the data cache the run used (None: not recorded); each has its own Pareto front


@dataclass
class Comparison:
    rows: list[Row]
    markdown: str
    markdown_path: Path
    csv_path: Path
    plot_path: Path


# ---- reading runs (found by nas.evaluate.run_dirs) ----------------------------------


def read_train_dir(path: Path, label: str) -> Row:
    metrics = _read_json(path / "metrics.json")
    model_path = path / "model.pt" if (path / "model.pt").is_file() else metrics.get("model")
    missing = [k for k in ("accuracy", "latency_ms", "arch") if k not in metrics]
    if missing:
        raise ValueError(f"{path / 'metrics.json'} lacks {missing}: was it written by melnas-train or melnas-eval?")
    return Row(
        run=label,
        origin=str(metrics.get("origin", "unknown")),
        accuracy_kind=TEST,
        arch_hash=str(metrics.get("arch_hash") or arch_hash(metrics["arch"])),
        arch_string=str(metrics.get("arch_string", "")),
        accuracy=metrics["accuracy"],
        recording_accuracy=metrics.get("recording_accuracy"),
        f1_macro=metrics.get("f1_macro"),
        params=metrics.get("params"),
        macs=metrics.get("macs"),
        latency_ms=metrics["latency_ms"],
        retrained=bool(metrics.get("retrained", True)),  # False: pruned by melnas-adapt and fine-tuned
        model_path=str(model_path) if model_path else None,
        precision=str(metrics.get("precision", "fp32")),
        latency_runtime=str(metrics.get("latency_runtime", {}).get("name", "torch (before latency runtimes)")),
        space_config=metrics.get("space_config"),
    )


def read_search_dir(path: Path, label: str) -> list[Row]:
    """Rows of ``top_archs.json``; without it (an interrupted run), the best-scored
    line of each arch in ``search_log.jsonl``."""
    log = _read_jsonl(path / "search_log.jsonl") if (path / "search_log.jsonl").is_file() else []
    if (path / "top_archs.json").is_file():
        entries = _read_json(path / "top_archs.json")
        if not isinstance(entries, list):
            raise ValueError(f"{path / 'top_archs.json'} must hold a list of archs")
    else:
        best: dict[str, dict[str, Any]] = {}
        for line in log:
            key = line.get("hash") or arch_hash(line["arch"])
            if key not in best or _num(line.get("reward"), -math.inf) > _num(best[key].get("reward"), -math.inf):
                best[key] = line
        entries = list(best.values())
    controller = _controller(path, log)
    rows = []
    for entry in entries:
        arch = entry["arch"] if isinstance(entry.get("arch"), Mapping) else entry
        rows.append(
            Row(
                run=label,
                origin=str(entry.get("controller") or controller),
                accuracy_kind=PROXY,
                arch_hash=str(entry.get("hash") or arch_hash(arch)),
                arch_string=str(entry.get("arch_str") or entry.get("arch_string") or ""),
                accuracy=entry.get("accuracy"),
                params=entry.get("params"),
                macs=entry.get("macs"),
                latency_ms=entry.get("latency_ms"),
                reward=entry.get("reward"),
                space_config=entry.get("space_config"),
            )
        )
    return rows


def _controller(path: Path, log: Sequence[Mapping[str, Any]]) -> str:
    """The search's controller: from its log lines, else from Hydra's recorded choices."""
    for line in log:
        if line.get("controller"):
            return str(line["controller"])
    hydra_file = path / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        import yaml

        choices = (yaml.safe_load(hydra_file.read_text()) or {}).get("hydra", {}).get("runtime", {}).get("choices", {})
        if choices.get("controller"):
            return str(choices["controller"])
    return "unknown"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    lines = []
    with path.open() as fh:
        for number, text in enumerate(fh, 1):
            if text.strip():
                try:
                    lines.append(json.loads(text))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number} is not valid JSON: {err}") from err
    return lines


def _num(value: Any, default: float) -> float:
    return default if value is None else float(value)


def collect_rows(
    paths: Iterable[str | Path], *, remeasure_rounds: int = 0, latency: LatencySettings | None = None,
    latency_tolerance: float = LATENCY_TOLERANCE,
) -> list[Row]:
    """Every arch of every run found under ``paths``, linked and marked (see the module doc).

    ``remeasure_rounds`` > 0: the test rows' models are timed again, side by side, and
    their latencies replaced (``nas.latency.side_by_side``). ``latency_tolerance``: see
    ``nas.evaluate.pareto.pareto_front``."""
    runs = find_run_dirs(paths)
    warn_on_mixed_data(runs)
    labels = run_labels(runs)
    rows: list[Row] = []
    for run in runs:
        found = [read_train_dir(run, labels[run])] if is_train_dir(run) else read_search_dir(run, labels[run])
        data = run_data(run)
        for row in found:
            row.data = str(data) if data else None
        rows += found
    name_differing_space_settings(rows)
    link_retrained(rows)
    if remeasure_rounds > 0:
        remeasure(rows, remeasure_rounds, latency)
    mark_pareto(rows, latency_tolerance)
    return sorted(rows, key=_order)


def remeasure(rows: list[Row], rounds: int, latency: LatencySettings | None = None) -> None:
    """Replace the test rows' latencies by a side-by-side timing of their models (a
    ``model.pt`` in ``latency.runtime``, an ``.onnx`` file in its own session)."""
    from nas.latency.measure import LatencySettings  # loads torch: only when asked
    from nas.latency.side_by_side import latency_side_by_side

    tested = [r for r in rows if r.accuracy_kind == TEST]
    unknown = [r.run for r in tested if not r.model_path]
    if unknown:
        raise ValueError(f"cannot re-measure {unknown}: their metrics.json names no model and no model.pt is beside it")
    latencies = latency_side_by_side([r.model_path for r in tested], rounds=rounds, latency=latency or LatencySettings())
    runtime = (latency or LatencySettings()).cpu_runtime().name  # "auto" resolved
    for row, measured in zip(tested, latencies):
        row.latency_ms = measured
        row.latency_runtime = "onnxruntime" if str(row.model_path).endswith(".onnx") else runtime


def name_differing_space_settings(rows: list[Row]) -> None:
    """Rows of one arch built with other space settings are other networks under one arch
    hash (MobileNetV3-Small at width 0.5 and at 0.25): add the settings they differ in to
    their origin, ``preset:mobilenetv3_small (width=0.25)``."""
    same_arch: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if row.space_config:
            same_arch.setdefault((str(row.space_config.get("_target_")), row.arch_hash), []).append(row)
    for group in same_arch.values():
        keys = sorted({key for row in group for key in row.space_config if key != "_target_"})
        differing = [key for key in keys if len({json.dumps(row.space_config.get(key), sort_keys=True)
                                                 for row in group}) > 1]
        for row in group if differing else []:
            row.origin += " (" + ", ".join(f"{key}={row.space_config.get(key)}" for key in differing) + ")"


def link_retrained(rows: list[Row]) -> None:
    """Mark search rows whose arch was retrained; give retrained rows their search reward."""
    trained = {r.arch_hash for r in rows if r.accuracy_kind == TEST}
    rewards = {r.arch_hash: r.reward for r in rows if r.accuracy_kind == PROXY and r.reward is not None}
    for row in rows:
        if row.accuracy_kind == PROXY:
            row.retrained = row.arch_hash in trained
        elif row.reward is None:
            row.reward = rewards.get(row.arch_hash)


def mark_pareto(rows: list[Row], latency_tolerance: float = LATENCY_TOLERANCE) -> None:
    """Pareto front (accuracy up, latency down) within each accuracy kind and data set
    separately: accuracies of another kind or on other data do not compete."""
    groups: dict[tuple[str, str | None], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.accuracy_kind, row.data), []).append(row)
    for group in groups.values():
        front = pareto_front([r.accuracy for r in group], [r.latency_ms for r in group],
                             latency_tolerance=latency_tolerance)
        for row, on_front in zip(group, front):
            row.pareto = on_front


def _order(row: Row) -> tuple:
    return (row.accuracy_kind != TEST, -_num(row.accuracy, -1.0), _num(row.latency_ms, math.inf))


# ---- writing ------------------------------------------------------------------------

COLUMNS = [
    ("run", "run"), ("origin", "origin"), ("accuracy_kind", "acc. kind"), ("precision", "precision"),
    ("accuracy", "accuracy"), ("recording_accuracy", "acc. per recording"),
    ("f1_macro", "F1 (macro)"), ("params", "params"), ("macs", "MACs"), ("latency_ms", "latency ms"),
    ("reward", "search reward"), ("retrained", "retrained"), ("pareto", "Pareto"), ("arch_hash", "arch"),
]


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return ("★" if value else "") if key == "pareto" else ("yes" if value else "no")
    if key in ("accuracy", "recording_accuracy", "f1_macro", "reward"):
        return f"{value:.4f}"
    if key == "latency_ms":
        return f"{value:.3f}"
    if key in ("params", "macs"):
        return f"{int(value):,}"
    return str(value)


def markdown_table(
    rows: Sequence[Row], *, remeasure_rounds: int = 0, latency_tolerance: float = LATENCY_TOLERANCE
) -> str:
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(_cell(key, getattr(row, key)) for key, _ in COLUMNS) + " |" for row in rows]
    timing = (
        f"re-measured now, side by side (median of {remeasure_rounds} rounds)"
        if remeasure_rounds > 0
        else "as its run measured it"
    )
    runtimes = sorted({r.latency_runtime for r in rows if r.accuracy_kind == TEST and r.latency_runtime})
    notes = [
        "",
        "acc. kind `test`: a trained model (retrained from scratch, or pruned by melnas-adapt "
        f"and fine-tuned: retrained = no), test-split accuracy per window and per recording "
        f"(the mean of its windows' probabilities, what melnas-predict gives a file), latency on CPU, 1 thread, batch 1, "
        f"{timing} (a model.pt in the runtime of latency_measure.runtime, default onnxruntime; an "
        "int8 row: its quantized ONNX file in onnxruntime). `proxy`: search only, validation accuracy with the "
        "supernet's shared weights and the latency table's prediction; not comparable with "
        "`test` rows. ★ = on the accuracy-latency Pareto front of its kind and data set (latencies within "
        f"{latency_tolerance:.0%} of each other count as equal: timing noise).",
    ]
    if len(runtimes) > 1:
        notes.append(f"**Warning**: the test rows' latencies were timed in different runtimes ({', '.join(runtimes)}) "
                     "and do not compare; re-time them side by side with --remeasure.")
    return "\n".join([header, rule, *body, *notes])


def write_csv(rows: Sequence[Row], path: Path) -> Path:
    names = [f.name for f in fields(Row)]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        writer.writerows({name: json.dumps(value) if isinstance(value, dict) else value
                          for name, value in asdict(row).items()} for row in rows)
    return path


def plot_pareto(rows: Sequence[Row], path: Path) -> Path:
    """Accuracy vs latency: retrained models (test) and search-only archs (proxy) in two panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (TEST, "retrained: test accuracy vs measured latency"),
        (PROXY, "search only: proxy accuracy vs predicted latency"),
    ]
    panels = [(kind, title) for kind, title in panels if any(r.accuracy_kind == kind for r in rows)]
    origins = sorted({r.origin for r in rows})
    colours = {o: plt.get_cmap("tab10")(i % 10) for i, o in enumerate(origins)}
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), squeeze=False)
    for ax, (kind, title) in zip(axes[0], panels):
        group = [r for r in rows if r.accuracy_kind == kind and r.accuracy is not None and r.latency_ms is not None]
        for origin in origins:
            points = [r for r in group if r.origin == origin]
            if points:
                ax.scatter([r.latency_ms for r in points], [r.accuracy for r in points], color=colours[origin],
                           label=origin, s=60 if kind == TEST else 30, alpha=0.9 if kind == TEST else 0.6,
                           edgecolors="black" if kind == TEST else "none")
        for index, data in enumerate(sorted({r.data or "" for r in group})):  # one front per data set
            front = sorted((r for r in group if r.pareto and (r.data or "") == data), key=lambda r: r.latency_ms)
            if front:
                ax.step([r.latency_ms for r in front], [r.accuracy for r in front], where="post", color="black",
                        linestyle="-" if kind == TEST else "--", linewidth=1, label=None if index else "Pareto front")
        if kind == TEST:
            for r in group:
                ax.annotate(r.run, (r.latency_ms, r.accuracy), textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.set_title(title, fontsize=10)
        runtimes = sorted({r.latency_runtime for r in group if r.latency_runtime})
        where = f", {' / '.join(runtimes)}" if kind == TEST and runtimes else ""
        ax.set_xlabel(f"latency (ms, batch 1{where})")
        ax.set_ylabel("test accuracy" if kind == TEST else "proxy accuracy (shared weights)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def compare_runs(
    paths: Iterable[str | Path], out_dir: str | Path, *, remeasure_rounds: int = 0, latency: LatencySettings | None = None,
    latency_tolerance: float = LATENCY_TOLERANCE,
) -> Comparison:
    """``melnas-compare``: write ``compare.md``, ``compare.csv`` and ``pareto.png`` to ``out_dir``."""
    rows = collect_rows(paths, remeasure_rounds=remeasure_rounds, latency=latency, latency_tolerance=latency_tolerance)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = markdown_table(rows, remeasure_rounds=remeasure_rounds, latency_tolerance=latency_tolerance)
    markdown_path = out_dir / "compare.md"
    markdown_path.write_text(markdown + "\n")
    return Comparison(
        rows=rows,
        markdown=markdown,
        markdown_path=markdown_path,
        csv_path=write_csv(rows, out_dir / "compare.csv"),
        plot_path=plot_pareto(rows, out_dir / "pareto.png"),
    )
