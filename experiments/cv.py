"""melnas-cv: train one arch on every fold of a data set with folds and report the mean
and standard deviation of each test metric (the protocol of ESC-50 and UrbanSound8K)."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.train.cross_validation import cross_validate


@hydra.main(version_base="1.3", config_path="../conf", config_name="cv")
def main(cfg: DictConfig) -> None:
    try:
        result = cross_validate(cfg, HydraConfig.get().runtime.output_dir,
                                progress=bool(cfg.progress))
    except ValueError as error:
        print(f"melnas-cv: {error}", file=sys.stderr)
        sys.exit(2)
    print(result.table())
    print(f"summary: {result.summary_path}")


if __name__ == "__main__":
    main()
