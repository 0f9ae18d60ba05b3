"""The melnas-adapt job: load a trained model, run ``nas.compress.netadapt.netadapt`` on it
with measured latency as the stop, fine-tune the result with ``nas.train.loop.fit``, and
write ``model.pt``, ``metrics.json``, ``adapt_trace.csv`` and ``adapt_trace.png``.
"""

from __future__ import annotations

import copy
import csv
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from nas.compress.netadapt import (
    AdaptSettings,
    Batches,
    TraceRow,
    netadapt,
)
from nas.latency.relative import CONFIRM_FACTOR, measure_in_turns
from nas.compress.pruning import (
    prunable_widths,
)
from nas.data.dataset import make_loader, open_prepared
from nas.evaluate.metrics import (
    check_compatible,
    evaluate_model,
    write_report,
)
from nas.io.model_file import load_model, save_model, to_plain
from nas.latency.measure import LatencySettings, TimedModel, latency_table_for
from nas.latency.settings import LatencyTableSettings
from nas.runtime import resolve_device
from nas.train.augment import AugmentSettings
from nas.train.job import OptimizerFactory
from nas.train.loop import Recipe, fit

log = logging.getLogger(__name__)


# ---- settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneSettings:
    """``finetune``: the long fine-tune of the pruned model (0 epochs = none)."""

    epochs: int = 10
    batch_size: int = 32
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    patience: int = 5
    grad_clip_norm: float | None = 5.0
    spec_augment: AugmentSettings = field(default_factory=AugmentSettings)
    optimizer: dict[str, Any] = field(default_factory=dict)  # its config; the factory is passed in

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise ValueError(f"finetune.epochs={self.epochs} must be >= 0 and finetune.batch_size={self.batch_size} >= 1")
        if self.epochs:
            self.recipe()  # validates the rest

    def recipe(self) -> Recipe:
        return Recipe(epochs=self.epochs, warmup_epochs=0.0, min_lr_ratio=self.min_lr_ratio,
                      label_smoothing=self.label_smoothing, patience=self.patience,
                      grad_clip_norm=self.grad_clip_norm)


@dataclass(frozen=True)
class AdaptJob:
    """``conf/adapt.yaml``: its own keys and its ``netadapt``, ``finetune``, ``latency_table``
    and ``latency_measure`` groups."""

    model: str  # a model.pt written by melnas-train (or melnas-adapt)
    target_ms: float | None = None
    target_ratio: float | None = None
    cache_dir: str | None = None  # None: the cache recorded in the model
    seed: int = 0
    device: str = "auto"
    netadapt: AdaptSettings = field(default_factory=AdaptSettings)
    short_batch_size: int = 32
    val_samples: int | None = None
    eval_batch_size: int = 256
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    latency_table: LatencyTableSettings = field(default_factory=LatencyTableSettings)
    latency_measure: LatencySettings = field(default_factory=LatencySettings)

    def __post_init__(self) -> None:
        if (self.target_ms is None) == (self.target_ratio is None):
            raise ValueError("give exactly one of target_ms=<ms> and target_ratio=<fraction of the measured latency>")
        if self.short_batch_size < 1 or self.eval_batch_size < 1 or (self.val_samples is not None and self.val_samples < 1):
            raise ValueError("short_batch_size and eval_batch_size must be >= 1, val_samples null or >= 1")


# ---- the melnas-adapt job -------------------------------------------------------------


@dataclass
class AdaptRun:
    out_dir: Path
    model_path: Path
    metrics_path: Path
    trace_path: Path
    plot_path: Path
    metrics: dict[str, Any]


def _batch_source(loader: DataLoader, count: int) -> Callable[[int], Batches]:
    """``k -> list`` of the next ``count`` batches of ``loader`` (cycled; the epoch order
    continues across iterations), held in memory so every proposal sees the same ones."""

    def endless() -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield from loader

    stream = endless()
    return lambda _k: [next(stream) for _ in range(count)]


def _first_samples(loader: DataLoader, limit: int | None) -> Batches:
    batches, seen = [], 0
    for x, y in loader:
        if limit is not None and seen + len(y) > limit:
            x, y = x[: limit - seen], y[: limit - seen]
        if len(y):
            batches.append((x, y))
        seen += len(y)
        if limit is not None and seen >= limit:
            break
    return batches


def adapt_model(job: AdaptJob, *, out_dir: str | Path, finetune_optimizer: OptimizerFactory | None = None) -> AdaptRun:
    """``melnas-adapt``: prune ``job.model`` to ``job.target_ms`` / ``job.target_ratio`` with
    NetAdapt, fine-tune it (with ``finetune_optimizer``, built from ``job.finetune.optimizer``),
    evaluate it. Writes ``model.pt`` (with its ``widths``), ``metrics.json`` (+
    ``per_class.csv``, ``confusion_matrix.png``), ``adapt_trace.csv`` and ``adapt_trace.png``
    into ``out_dir``."""
    if job.finetune.epochs > 0 and finetune_optimizer is None:
        raise ValueError("finetune.epochs > 0 needs an optimizer factory (finetune.optimizer)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(job.seed)
    device = resolve_device(job.device)
    settings = job.netadapt
    trained = load_model(job.model)
    cache_dir = job.cache_dir or trained.data_meta.get("cache_dir")
    if not cache_dir:
        raise ValueError(f"{job.model} does not record its data cache: pass cache_dir=<prepared cache>")
    data = open_prepared(cache_dir)
    check_compatible(trained, data)
    space, arch, shape = trained.space, trained.arch, trained.input_shape
    table = latency_table_for(
        space, num_classes=trained.num_classes, input_shape=shape, **job.latency_table.kwargs()
    )
    # The table was built (or read) with its span; from here on each timing is one model's, or
    # the few units of a new width, which a 10 s span would make cost 10 s apiece (every
    # proposal of every iteration). Timed without a span, they are read as blocks of >=
    # min_time_ms; NetAdapt's measured latencies are ratios in turns (RelativeLatency).
    table.measure = replace(table.measure, min_span_ms=0.0)  # latency_table_for's InterleavedTimer
    one_model = table.measure

    def measure(model: nn.Module) -> float:
        return one_model([TimedModel(copy.deepcopy(model).cpu(), tuple(shape))])[0]

    train_loader = make_loader(
        data, "train", batch_size=job.short_batch_size, shuffle=True, seed=job.seed, drop_last=True
    )
    if len(train_loader) == 0:
        raise ValueError(f"the train split of {cache_dir} gives no batch of short_batch_size={job.short_batch_size}")
    val_loader = make_loader(data, "val", batch_size=job.eval_batch_size, shuffle=False)
    # A subset of the val split must be drawn at random: the split is stored in recording order.
    subset = job.val_samples is not None
    val_batches = _first_samples(
        make_loader(data, "val", batch_size=job.eval_batch_size, shuffle=subset, seed=job.seed),
        job.val_samples,
    )
    log.info("adapting %s (%s) with table %s", job.model, trained.arch_string, table.path)
    result = netadapt(
        space, arch, trained.model, num_classes=trained.num_classes, input_shape=shape,
        predict_layers=table.predict, measure=measure,
        train_batches=_batch_source(train_loader, min(settings.short_steps, len(train_loader)) or 1),
        val_batches=val_batches, target_ms=job.target_ms, target_ratio=job.target_ratio,
        widths=trained.widths, settings=settings, device=device,
        on_iteration=lambda trace: write_trace(trace, out_dir / "adapt_trace.csv"),
    )
    loop_seconds = result.trace[-1].elapsed_s
    model = result.model
    finetune: dict[str, Any] = {"epochs": job.finetune.epochs}
    if job.finetune.epochs > 0:
        fitted = fit(
            model,
            train_loader=make_loader(
                data, "train", batch_size=job.finetune.batch_size, shuffle=True, seed=job.seed, drop_last=True
            ),
            val_loader=val_loader,
            optimizer_factory=finetune_optimizer,
            recipe=job.finetune.recipe(),
            augment=job.finetune.spec_augment.build(),
            device=device,
            batch_setting="finetune.batch_size",
        )
        finetune.update(best_epoch=fitted.best_epoch, best_val_accuracy=fitted.best_val_accuracy,
                        epochs_run=fitted.epochs_run, seconds=fitted.seconds)
    final = measure_in_turns(model, trained.model, measure, CONFIRM_FACTOR * settings.measure_rounds)
    original_ms, final_ms = final.reference_ms, final.model_ms
    summary = {
        "source_model": job.model,
        "target_ms": result.target_ms,
        "target_ratio": job.target_ratio,
        "initial_measured_ms": result.initial_ms,
        "final_measured_ms": final_ms,
        "original_measured_ms_at_end": original_ms,
        "final_vs_original": final.ratio,
        # The final model's latency at the load of the start: initial x (final / original, measured in turns).
        "final_latency_ms": result.initial_ms * final.ratio,
        "final_vs_target": result.initial_ms * final.ratio / result.target_ms,
        "within_5pct_of_target": abs(result.initial_ms * final.ratio / result.target_ms - 1.0) <= 0.05,
        "latency_statistic": table.context["statistic"],
        "iterations": result.iterations,
        "loop_seconds": loop_seconds,
        "stop_reason": result.stop_reason,
        "floor_vs_original": result.floor_ratio,
        "widths_before": prunable_widths(space, arch, trained.widths),
        "widths_after": result.widths,
        "arch_before": trained.arch_string,
        "arch_after": space.arch_string(result.arch),
        "val_accuracy_before": result.trace[0].val_accuracy,
        "val_accuracy_after_loop": result.trace[-1].val_accuracy,
        "finetune": finetune,
        "settings": to_plain(asdict(settings)),
        "latency_table": str(table.path),
    }
    info = {
        **trained.info,
        "origin": f"{trained.info.get('origin', 'unknown')}+netadapt",
        "source": job.model,
        "arch_string": space.arch_string(result.arch),
        "netadapt": summary,
    }
    model_path = save_model(
        out_dir / "model.pt", model=model.cpu(), arch=result.arch, space_config=trained.space_config,
        class_names=trained.class_names, input_shape=shape, data_meta=trained.data_meta, info=info,
        widths=result.widths,
    )
    latency = job.latency_measure
    before = evaluate_model(trained, data, split="test", batch_size=job.eval_batch_size, device=device, latency=latency)
    adapted = load_model(model_path, device=device)
    metrics = evaluate_model(adapted, data, split="test", batch_size=job.eval_batch_size, device=device, latency=latency)
    summary["before"] = {k: before[k] for k in ("accuracy", "f1_macro", "recording_accuracy", "params", "macs", "latency_ms")}
    metrics.update(
        {"source": job.model, "retrained": False, "training": trained.info.get("training"), "widths": result.widths,
         "netadapt": summary}
    )
    paths = write_report(metrics, out_dir)
    trace_path = write_trace(result.trace, out_dir / "adapt_trace.csv")
    plot_path = plot_trace(result.trace, result.target_ms, out_dir / "adapt_trace.png")
    target_ratio = result.target_ms / result.initial_ms
    log.info(
        "%d iterations in %.0fs (%s); test accuracy %.4f -> %.4f; measured latency %.3f -> %.3f ms, timed in turns: "
        "%.2f of the original (target %.2f)",
        result.iterations, loop_seconds, result.stop_reason, before["accuracy"], metrics["accuracy"],
        original_ms, final_ms, final.ratio, target_ratio,
    )
    if not summary["within_5pct_of_target"]:
        log.warning(
            "the adapted model lands at %.0f%% of the target latency, not within 5%%: the last step's cut was larger "
            "than predicted, or the timing was noisy (other processes on these cores: the starting model read %.3f ms "
            "at the start and %.3f ms now); re-time both side by side with melnas-compare --remeasure 9, and "
            "on a busy machine adapt again with more netadapt.measure_rounds",
            100 * summary["final_vs_target"], result.initial_ms, original_ms,
        )
    return AdaptRun(out_dir, model_path, paths["metrics"], trace_path, plot_path, metrics)


def write_trace(trace: Sequence[TraceRow], path: str | Path) -> Path:
    """``adapt_trace.csv``: one row per accepted iteration (0 = the unpruned model)."""
    path = Path(path)
    rows = [asdict(row) for row in trace]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot_trace(trace: Sequence[TraceRow], target_ms: float, path: str | Path) -> Path:
    """``adapt_trace.png``: predicted and measured latency (with the target) and validation
    accuracy per iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [r.iteration for r in trace]
    fig, (ax_lat, ax_acc) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax_lat.plot(its, [r.latency_ms for r in trace], "o-", label="measured (vs original, in turns)")
    ax_lat.plot(its, [r.measured_ms for r in trace], ".", color="0.6", label="measured (raw)")
    ax_lat.plot(its, [r.predicted_ms for r in trace], "s--", label="predicted (table)")
    ax_lat.axhline(target_ms, color="k", linestyle=":", label=f"target {target_ms:.3f} ms")
    ax_lat.set_ylabel("latency (ms, batch 1)")
    ax_lat.legend()
    ax_acc.plot(its, [r.val_accuracy for r in trace], "o-", color="tab:green")
    ax_acc.set_ylabel("val accuracy (after short fine-tune)")
    ax_acc.set_xlabel("NetAdapt iteration")
    fig.suptitle("NetAdapt")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
