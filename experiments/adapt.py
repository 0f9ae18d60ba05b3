"""melnas-adapt: prune a trained model to a latency budget (NetAdapt), fine-tune and evaluate it."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.cli import HydraRun, run_hydra_app
from experiments.hydra_app import MODEL_RECORDS, hydra_app
from experiments.settings import build, settings_from
from nas.compress.adapt_job import AdaptJob, AdaptRun, adapt_model


def adapt(cfg: DictConfig, run: HydraRun) -> AdaptRun:
    """The NetAdapt run ``cfg`` (conf/adapt.yaml, composed) describes, in ``run.out_dir``."""
    job = settings_from(cfg, AdaptJob)
    optimizer = build(job.finetune.optimizer) if job.finetune.epochs > 0 else None
    return adapt_model(job, out_dir=run.out_dir, finetune_optimizer=optimizer)


def report(result: AdaptRun) -> None:
    print(f"model: {result.model_path}")
    print(f"metrics: {result.metrics_path}")
    print(f"trace: {result.trace_path} ({result.plot_path.name})")


@hydra_app("adapt", taken_from=MODEL_RECORDS)
def main(cfg: DictConfig) -> None:
    run_hydra_app("adapt", lambda cfg, run: report(adapt(cfg, run)), cfg)


if __name__ == "__main__":
    main()
