"""melnas-train: retrain an arch (a search's best_arch.json or a preset) and evaluate it."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.cli import HydraRun, hydra_worker_overrides, run_hydra_app
from experiments.hydra_app import hydra_app
from experiments.settings import build, plain, settings_from
from nas.distributed import world_from_env
from nas.train.job import TrainJob, TrainResult, train_model


def train(cfg: DictConfig, run: HydraRun) -> TrainResult:
    """The retraining ``cfg`` (conf/train.yaml, composed) describes, in ``run.out_dir``."""
    job = settings_from(cfg, TrainJob, skip=("data", "search_space"))
    return train_model(
        job, out_dir=run.out_dir, cache_dir=plain(cfg.data.cache_dir), search_space=plain(cfg.search_space),
        optimizer_factory=build(job.train.optimizer),
    )


def report(result: TrainResult) -> None:
    if not world_from_env().is_writer:
        return
    print(f"model: {result.model_path}")
    print(f"metrics: {result.metrics_path}")


@hydra_app("train")
def hydra_main(cfg: DictConfig) -> None:
    run_hydra_app("train", lambda cfg, run: report(train(cfg, run)), cfg)


def main() -> None:
    """``melnas-train``; also each rank of ``torchrun ... melnas-train``."""
    hydra_worker_overrides()
    hydra_main()


if __name__ == "__main__":
    main()
