"""melnas-train: retrain an arch (a search's best_arch.json or a preset) and evaluate it."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.train.job import train_model


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        result = train_model(cfg, HydraConfig.get().runtime.output_dir)
    except ValueError as error:
        print(f"melnas-train: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"model: {result.model_path}")
    print(f"metrics: {result.metrics_path}")


if __name__ == "__main__":
    main()
