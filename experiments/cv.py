"""melnas-cv: train one arch on every fold of a data set with folds and report the mean
and standard deviation of each test metric (the protocol of ESC-50 and UrbanSound8K)."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.cli import HydraRun, run_hydra_app
from experiments.hydra_app import hydra_app
from experiments.settings import build, plain, settings_from
from nas.train.cross_validation import CrossValidationResult, cross_validate
from nas.train.job import TrainJob


def cv(cfg: DictConfig, run: HydraRun) -> CrossValidationResult:
    """The cross-validation ``cfg`` (conf/cv.yaml: conf/train.yaml plus ``progress``) describes."""
    job = settings_from(cfg, TrainJob, skip=("data", "search_space", "progress"))
    return cross_validate(
        job, data=plain(cfg.data), out_dir=run.out_dir, search_space=plain(cfg.search_space),
        optimizer_factory=build(job.train.optimizer), progress=bool(cfg.progress),
    )


def report(result: CrossValidationResult) -> None:
    print(result.table())
    print(f"summary: {result.summary_path}")


@hydra_app("cv")
def main(cfg: DictConfig) -> None:
    run_hydra_app("cv", lambda cfg, run: report(cv(cfg, run)), cfg)


if __name__ == "__main__":
    main()
