"""The melnas-train job: retrain one architecture from scratch on a prepared cache with
``nas.train.loop.fit``, keep its best epoch, save ``model.pt`` and score it on the test
split (``metrics.json``).

``arch`` is either an arch file (``best_arch.json`` / any file holding an arch JSON; a
search's file carries the ``space_config`` it was searched in, which is used as is) or a
preset name, looked up first in the configured ``search_space`` and then in every
registered space.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch.utils.tensorboard import SummaryWriter

from nas.data.dataset import PreparedData, make_loader, open_prepared
from nas.data.errors import DataError
from nas.evaluate.metrics import (
    evaluate_model,
    format_summary,
    write_report,
)
from nas.io.model_file import TrainedModel, build_network, save_model, to_plain
from nas.io.registry import available_spaces, build_space
from nas.io.run_config import run_cache_dir
from nas.io.registry import space_config as registered_space_config
from nas.latency.measure import LatencySettings
from nas.distributed import (
    SINGLE, World, broadcast_object, local_device, process_group, seed_per_rank,
)
from nas.runtime import resolve_device, resolve_threads, torch_threads
from nas.train.amp import resolve_amp
from nas.train.augment import AugmentSettings
from nas.train.loop import Recipe, fit

log = logging.getLogger(__name__)


# ---- what to train ------------------------------------------------------------------


@dataclass(frozen=True)
class ArchSpec:
    """An arch to train: its JSON, the space config to build it in, and where it came from."""

    arch_json: dict[str, Any]
    space_config: dict[str, Any]
    origin: str  # the controller of the search that found it ("enas_lstm", "random", ...) or "preset:<name>"
    source: str  # the arch file, or "preset:<name>"


def resolve_arch(spec: str, *, search_space: Mapping[str, Any], space_overrides: Mapping[str, Any] | None = None) -> ArchSpec:
    """Turn ``arch=...`` (an arch file, a search run dir holding ``best_arch.json``, or a
    preset name) into an ``ArchSpec``.

    ``search_space`` is the composed ``search_space`` config group; it is the space of a
    preset found in it, and of an arch file that names that space and carries no
    ``space_config``. ``space_overrides`` are applied on top in every case.
    """
    spec = str(spec)
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "best_arch.json").is_file():  # a search run dir
        path = path / "best_arch.json"
    if path.suffix == ".json" or path.is_file():
        result = _arch_from_file(path, search_space)
    else:
        result = _arch_from_preset(spec, search_space)
    if space_overrides:
        merged = {**result.space_config, **to_plain(dict(space_overrides))}
        result = ArchSpec(result.arch_json, merged, result.origin, result.source)
    return result


def searched_cache_dir(spec: ArchSpec) -> Path | None:
    """The ``data.cache_dir`` of the search whose run folder holds ``spec``'s arch file;
    None for a preset or a file outside a search run."""
    return None if spec.source.startswith("preset:") else run_cache_dir(Path(spec.source).parent)


def open_training_data(spec: ArchSpec, cache_dir: str | Path) -> PreparedData:
    """The prepared cache to train ``spec`` on; when it is missing and the arch was
    searched on another cache, the error names that one (a forgotten ``data.cache_dir``
    otherwise sends the user to prepare their data under the default cache's name)."""
    try:
        return open_prepared(cache_dir)
    except DataError as error:
        searched = searched_cache_dir(spec)
        if searched is None or searched.resolve() == Path(cache_dir).expanduser().resolve():
            raise
        raise DataError(f"{error}; or, to train on the data {spec.source} was searched on, "
                        f"pass data.cache_dir={searched}") from error


def _arch_from_file(path: Path, search_space: Mapping[str, Any]) -> ArchSpec:
    if not path.is_file():
        raise ValueError(f"arch file {path} does not exist: pass a search's best_arch.json or a preset name")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"arch file {path} is not valid JSON: {err}") from err
    arch_json = data["arch"] if isinstance(data.get("arch"), Mapping) else data
    if "space" not in arch_json or "choices" not in arch_json:
        raise ValueError(f'arch file {path} holds no arch: it needs "space" and "choices" keys')
    space_name = str(arch_json["space"])
    if isinstance(data.get("space_config"), Mapping):
        space_cfg = dict(data["space_config"])
    elif build_space(dict(search_space)).name == space_name:
        space_cfg = dict(search_space)
    else:
        space_cfg = registered_space_config(space_name)
    origin = str(data.get("controller") or _controller_of_search_dir(path.parent) or "arch file")
    return ArchSpec({"space": space_name, "choices": dict(arch_json["choices"])}, space_cfg, origin, str(path))


def _arch_from_preset(name: str, search_space: Mapping[str, Any]) -> ArchSpec:
    """Ask the configured space first, then every registered one, for preset ``name``."""
    configs = [dict(search_space)] + [registered_space_config(n) for n in available_spaces()]
    reasons: list[str] = []
    for cfg in configs:
        space = build_space(cfg)
        try:
            preset_space, arch = space.preset(name)
        except ValueError as err:
            reasons.append(str(err))
            continue
        if preset_space is not space:  # e.g. MobileNetV3-Large needs the large backbone
            cfg = dict(preset_space.config)
        return ArchSpec(arch.to_json_dict(), cfg, f"preset:{name}", f"preset:{name}")
    raise ValueError(
        f"arch={name!r} is neither an existing arch file nor a preset: " + "; ".join(dict.fromkeys(reasons))
    )


def _controller_of_search_dir(run_dir: Path) -> str | None:
    """The controller recorded in a search run's ``search_log.jsonl`` (first line), if any."""
    log_path = run_dir / "search_log.jsonl"
    if not log_path.is_file():
        return None
    with log_path.open() as fh:
        for line in fh:
            if line.strip():
                return json.loads(line).get("controller")
    return None


# ---- settings ---------------------------------------------------------------------------

# ``optimizer_factory(param_groups)`` -> an optimizer (a ``_target_`` node with ``_partial_: true``).
OptimizerFactory = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]


@dataclass(frozen=True)
class TrainSettings:
    """A retraining recipe: the ``train`` config group (``conf/train/default.yaml`` documents each key)."""

    epochs: int = 60
    batch_size: int = 64
    eval_batch_size: int = 256
    num_workers: int = 0
    warmup_epochs: float = 2.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    grad_clip_norm: float | None = 5.0
    patience: int = 12
    spec_augment: AugmentSettings = field(default_factory=AugmentSettings)
    space_overrides: dict[str, Any] = field(default_factory=dict)
    # The optimizer's config (``_target_``, recorded in metrics.json); the caller builds the
    # factory from it and passes that to ``train_model``.
    optimizer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.recipe()  # validates epochs, patience, ...
        if self.batch_size < 1 or self.eval_batch_size < 1 or self.num_workers < 0:
            raise ValueError(f"train.batch_size={self.batch_size} and train.eval_batch_size={self.eval_batch_size} "
                             f"must be >= 1, train.num_workers={self.num_workers} >= 0")

    def recipe(self) -> Recipe:
        return Recipe(epochs=self.epochs, warmup_epochs=self.warmup_epochs, min_lr_ratio=self.min_lr_ratio,
                      label_smoothing=self.label_smoothing, patience=self.patience,
                      grad_clip_norm=self.grad_clip_norm)


@dataclass(frozen=True)
class TrainJob:
    """``conf/train.yaml``'s own keys with its ``train`` and ``latency_measure`` groups."""

    arch: str  # an arch file (a search's best_arch.json), a search run dir, or a preset name
    seed: int = 0
    device: str = "auto"
    amp: str = "off"  # mixed precision of the training step: off | bf16 | fp16 | auto (nas/train/amp.py)
    train: TrainSettings = field(default_factory=TrainSettings)
    latency_measure: LatencySettings = field(default_factory=LatencySettings)


# ---- the melnas-train job -------------------------------------------------------------


@dataclass
class TrainResult:
    out_dir: Path
    model_path: Path
    metrics_path: Path
    metrics: dict[str, Any]


def train_model(
    job: TrainJob,
    *,
    out_dir: str | Path,
    cache_dir: str | Path,
    search_space: Mapping[str, Any],
    optimizer_factory: OptimizerFactory,
) -> TrainResult:
    """Train ``job.arch`` with the ``job.train`` recipe on the prepared cache ``cache_dir``;
    write into ``out_dir``. ``search_space`` is the space config of a preset (and of an arch
    file without one); ``optimizer_factory`` is built from ``job.train.optimizer``.

    Writes ``model.pt``, ``metrics.json`` (test split), ``per_class.csv``,
    ``confusion_matrix.png``, ``history.csv`` and TensorBoard events under ``tensorboard/``.

    Under torchrun (nas/distributed.py) each rank trains on its shard of the train split
    (``train.batch_size`` is the global batch), validation covers the whole val split
    (each rank scores its shard; the counts are summed), rank 0 alone writes, and it
    scores the whole test split; every rank returns rank 0's result.
    """
    with process_group(resolve_device(job.device)) as world:
        out_dir = broadcast_object(Path(out_dir), world)
        with torch_threads(resolve_threads(None)):
            result = _train_model(job, out_dir, cache_dir, search_space, optimizer_factory, world)
        return broadcast_object(result, world)


def _train_model(
    job: TrainJob, out_dir: Path, cache_dir: str | Path, search_space: Mapping[str, Any],
    optimizer_factory: OptimizerFactory, world: World = SINGLE,
) -> TrainResult | None:
    """``train_model``'s work on one rank; ``None`` on every rank but 0."""
    train = job.train
    if train.batch_size % world.size:
        raise ValueError(f"train.batch_size={train.batch_size} is the global batch: it must be a multiple of the "
                         f"{world.size} processes; change train.batch_size or --nproc_per_node")
    if world.is_writer:
        out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(job.seed)
    device = local_device(resolve_device(job.device), world)
    amp = resolve_amp(job.amp, device)
    spec = resolve_arch(job.arch, search_space=search_space, space_overrides=train.space_overrides)
    data = open_training_data(spec, cache_dir)
    data_meta = {**data.meta, "cache_dir": str(Path(data.cache_dir).resolve())}
    try:
        space, arch, model = build_network(
            spec.space_config, spec.arch_json, num_classes=data.num_classes, input_shape=data.input_shape
        )
    except ValueError as err:  # e.g. an arch file edited by hand, or searched with another depth
        raise ValueError(f"{spec.source}: {err}") from err
    arch_string = space.arch_string(arch)
    if world.is_writer:
        log.info("training %s arch %s of space %s (%s) on %s%s", spec.origin, arch_string, space.name, spec.source,
                 data.cache_dir, f" with {world.size} processes" if world.distributed else "")
    seed_per_rank(job.seed, world)  # augmentation masks differ per rank (one process: unchanged)
    pin = device.type == "cuda"
    train_loader = make_loader(
        data, "train", batch_size=train.batch_size // world.size, shuffle=True, seed=job.seed, drop_last=True,
        num_workers=train.num_workers, shard=world, pin_memory=pin,
    )
    val_loader = make_loader(data, "val", batch_size=train.eval_batch_size, shuffle=False, shard=world,
                             pin_memory=pin)
    writer = SummaryWriter(log_dir=str(out_dir / "tensorboard")) if world.is_writer else None
    if writer is not None:
        writer.add_text("arch", f"{spec.origin}: `{arch_string}`")
    try:
        result = fit(
            model,
            train_loader=train_loader,
            val_loader=val_loader,
            optimizer_factory=optimizer_factory,
            recipe=train.recipe(),
            augment=train.spec_augment.build(),
            device=device,
            writer=writer,
            world=world,
            amp=amp,
        )
        if writer is None:
            return None
        training = {
            "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy,
            "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early,
            "train_seconds": result.seconds,
            "recipe": to_plain(asdict(train)),
            "seed": job.seed,
            # Only where not the default (one float32 process): a default run's metrics.json is as it was.
            **({"amp": job.amp} if job.amp != "off" else {}),
            **({"processes": world.size} if world.distributed else {}),
        }
        info = {"origin": spec.origin, "source": spec.source, "arch_string": arch_string, "training": training}
        model_path = save_model(
            out_dir / "model.pt",
            model=model,
            arch=arch,
            space_config=spec.space_config,
            class_names=data.class_names,
            input_shape=data.input_shape,
            data_meta=data_meta,
            info=info,
        )
        _write_history(result.history, out_dir / "history.csv")
        trained = TrainedModel(
            model=model, space=space, arch=arch, space_config=spec.space_config,
            class_names=list(data.class_names), input_shape=tuple(data.input_shape),
            data_meta=data_meta, info=info, path=model_path,
        )
        metrics = evaluate_model(
            trained, data, split="test", batch_size=train.eval_batch_size, device=device,
            latency=job.latency_measure,
        )
        metrics.update({"source": spec.source, "retrained": True, "training": training})
        paths = write_report(metrics, out_dir)
        for key in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "latency_ms"):
            writer.add_scalar(f"test/{key}", metrics[key], result.best_epoch)
    finally:
        if writer is not None:
            writer.close()
    log.info("best epoch %d of %d (val accuracy %.4f)\n%s", result.best_epoch, result.epochs_run,
             result.best_val_accuracy, format_summary(metrics))
    return TrainResult(out_dir=out_dir, model_path=model_path, metrics_path=paths["metrics"], metrics=metrics)


def _write_history(history: list[dict[str, float]], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
