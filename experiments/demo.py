"""melnas-demo (`make search`): synthesise, prepare, search, retrain, baselines, compare."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.cli import HydraRun, run_hydra_app
from experiments.hydra_app import hydra_app
from experiments.demo_steps import run_demo, step_table


def demo(cfg: DictConfig, run: HydraRun) -> None:
    result = run_demo(cfg, run.out_dir)
    print()
    print(result.comparison.markdown)
    print()
    print(step_table(result))
    print(f"outputs: {result.out_dir}")
    print(f"table: {result.comparison.markdown_path}")
    print(f"Pareto plot: {result.comparison.plot_path}")


@hydra_app("demo")
def main(cfg: DictConfig) -> None:
    run_hydra_app("demo", demo, cfg)


if __name__ == "__main__":
    main()
