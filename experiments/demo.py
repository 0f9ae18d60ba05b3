"""melnas-demo (`make search`): synthesise, prepare, search, retrain, baselines, compare."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiments.demo_steps import run_demo, step_table


@hydra.main(version_base="1.3", config_path="../conf", config_name="demo")
def main(cfg: DictConfig) -> None:
    try:
        result = run_demo(cfg, HydraConfig.get().runtime.output_dir)
    except ValueError as error:
        print(f"melnas-demo: {error}", file=sys.stderr)
        sys.exit(2)
    print()
    print(result.comparison.markdown)
    print()
    print(step_table(result))
    print(f"outputs: {result.out_dir}")
    print(f"table: {result.comparison.markdown_path}")
    print(f"Pareto plot: {result.comparison.plot_path}")


if __name__ == "__main__":
    main()
