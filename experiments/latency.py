"""melnas-latency: build this machine's latency table and report its error; see conf/latency.yaml."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nas.io.registry import build_space
from nas.latency.measure import ArchLatency, check_latency_table, resolve_model_input

REPORT = "latency_report.json"


def print_row(row: ArchLatency) -> None:
    print(f"{row.predicted_ms:10.3f} {row.measured_ms:10.3f} {row.error_pct:+8.1f}%  {row.arch_string}", flush=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="latency")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        given_shape = None if cfg.input_shape is None else list(cfg.input_shape)
        model_input = resolve_model_input(
            data_cache=cfg.data.cache_dir, num_classes=cfg.num_classes, input_shape=given_shape
        )
        space = build_space(OmegaConf.to_container(cfg.search_space, resolve=True))
        latency = OmegaConf.to_container(cfg.latency, resolve=True)
        shape = "x".join(map(str, model_input.input_shape))
        print(f"space {space.name}, input {shape}, {model_input.num_classes} classes ({model_input.source}); "
              f"device {latency['device']}, {latency['threads']} thread(s)")
        print("building or loading the latency table (a new one measures units and calibrates) ...", flush=True)
        print(f"{'predicted':>10} {'measured':>10} {'error':>9}  arch (ms)")
        report = check_latency_table(
            space, num_classes=model_input.num_classes, input_shape=model_input.input_shape,
            num_archs=int(cfg.num_archs), seed=int(cfg.seed), progress=print_row, **latency,
        )
    except ValueError as error:
        print(f"melnas-latency: {error}", file=sys.stderr)
        sys.exit(2)
    cal = report.calibration
    if cal is not None:
        print(f"calibration: whole = {cal.scale:.3f} x unit sum + {cal.offset_ms:.3f} ms "
              f"(fitted on {len(cal.arch_hashes)} archs, median error there {cal.fit_error_pct:.1f}%)")
    print(f"held-out absolute error over {len(report.rows)} archs: median {report.median_abs_error_pct:.1f}%, "
          f"max {report.max_abs_error_pct:.1f}%, Kendall tau {report.kendall_tau:.2f}  ({report.context['hardware']})")
    (run_dir / REPORT).write_text(json.dumps(report.to_json_dict(), indent=2))
    print(f"table: {report.table_path}\nreport: {run_dir / REPORT}")


if __name__ == "__main__":
    main()
