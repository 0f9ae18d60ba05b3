"""melnas-latency: build this machine's latency table and report its error; see conf/latency.yaml."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from omegaconf import DictConfig

from experiments.cli import HydraRun, run_hydra_app
from experiments.hydra_app import hydra_app
from experiments.settings import plain, settings_from
from nas.io.registry import build_space
from nas.latency.measure import ArchLatency, check_latency_table, resolve_model_input
from nas.latency.settings import LatencyTableSettings

REPORT = "latency_report.json"


@dataclass(frozen=True)
class LatencyCheckSettings:
    """``conf/latency.yaml``'s own keys and its ``latency_table`` group."""

    num_archs: int = 20
    seed: int = 1
    input_shape: list[int] | None = None
    num_classes: int | None = None
    latency_table: LatencyTableSettings = field(default_factory=LatencyTableSettings)

    def __post_init__(self) -> None:
        if self.num_archs < 1:
            raise ValueError(f"num_archs={self.num_archs}: expected >= 1")


def print_row(row: ArchLatency) -> None:
    print(f"{row.predicted_ms:10.3f} {row.measured_ms:10.3f} {row.error_pct:+8.1f}%  {row.arch_string}", flush=True)


def check_settings(cfg: DictConfig) -> LatencyCheckSettings:
    """The settings in ``cfg`` (conf/latency.yaml). Its ``latency`` key is only a shorthand
    for ``latency_table.runtime``; an experiment file (``experiment=quick``) also sets the
    search's ``trainer`` and ``reward``, which this command does not use."""
    return settings_from(cfg, LatencyCheckSettings, skip=("data", "search_space", "latency", "trainer", "reward"))


def check(cfg: DictConfig, run: HydraRun) -> None:
    settings = check_settings(cfg)
    model_input = resolve_model_input(
        data_cache=plain(cfg.data.cache_dir), num_classes=settings.num_classes, input_shape=settings.input_shape
    )
    space = build_space(plain(cfg.search_space))
    table = settings.latency_table
    shape = "x".join(map(str, model_input.input_shape))
    print(f"space {space.name}, input {shape}, {model_input.num_classes} classes ({model_input.source}); "
          f"device {table.device}, runtime {table.runtime} ({table.precision}), {table.threads} thread(s)")
    print("building or loading the latency table (a new one measures units and calibrates) ...", flush=True)
    print(f"then {settings.num_archs} held-out archs, predicted, and measured all together (interleaved over "
          f">= {table.min_span_ms / 1000:.0f} s) ...", flush=True)
    print(f"{'predicted':>10} {'measured':>10} {'error':>9}  arch (ms)")
    report = check_latency_table(
        space, num_classes=model_input.num_classes, input_shape=model_input.input_shape,
        num_archs=settings.num_archs, seed=settings.seed, progress=print_row, **table.kwargs(),
    )
    cal = report.calibration
    if cal is not None:
        print(f"calibration: whole = {cal.scale:.3f} x unit sum + {cal.offset_ms:.3f} ms "
              f"(fitted on {len(cal.arch_hashes)} archs, median error there {cal.fit_error_pct:.1f}%)")
    runtime = report.context.get("runtime", {"name": "torch", "version": report.context["torch"]})
    print(f"held-out absolute error over {len(report.rows)} archs: median {report.median_abs_error_pct:.1f}%, "
          f"max {report.max_abs_error_pct:.1f}%, within +-10%: {report.share_within(10.0):.0%}, "
          f"Kendall tau {report.kendall_tau:.2f}  ({runtime['name']} {runtime['version']}, "
          f"{report.context['hardware']}, load average {os.getloadavg()[0]:.1f})")
    (run.out_dir / REPORT).write_text(json.dumps(report.to_json_dict(), indent=2))
    print(f"table: {report.table_path}\nreport: {run.out_dir / REPORT}")


@hydra_app("latency")
def main(cfg: DictConfig) -> None:
    run_hydra_app("latency", check, cfg)


if __name__ == "__main__":
    main()
