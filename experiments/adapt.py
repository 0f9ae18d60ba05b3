"""melnas-adapt: prune a trained model to a latency budget (NetAdapt), fine-tune and evaluate it."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.compress.adapt_job import adapt_model


@hydra.main(version_base="1.3", config_path="../conf", config_name="adapt")
def main(cfg: DictConfig) -> None:
    try:
        run = adapt_model(cfg, HydraConfig.get().runtime.output_dir)
    except (ValueError, FileNotFoundError) as error:
        print(f"melnas-adapt: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"model: {run.model_path}")
    print(f"metrics: {run.metrics_path}")
    print(f"trace: {run.trace_path} ({run.plot_path.name})")


if __name__ == "__main__":
    main()
