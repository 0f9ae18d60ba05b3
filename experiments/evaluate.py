"""melnas-eval: score a trained model.pt, or an exported .onnx file (float or int8), on a
prepared cache; write metrics.json and plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from experiments.cli import HydraRun, run_hydra_app
from experiments.hydra_app import MODEL_RECORDS, hydra_app
from experiments.settings import settings_from
from nas.evaluate.metrics import evaluate_checkpoint, format_summary
from nas.evaluate.onnx_eval import evaluate_onnx_file
from nas.latency.measure import LatencySettings


@dataclass(frozen=True)
class EvalSettings:
    """``conf/eval.yaml``."""

    model: str
    cache_dir: str | None = None
    split: str = "test"
    batch_size: int = 256
    device: str = "auto"
    latency_measure: LatencySettings = field(default_factory=LatencySettings)


def evaluate(cfg: DictConfig, run: HydraRun) -> dict[str, Any]:
    settings = settings_from(cfg, EvalSettings)
    if settings.model.endswith(".onnx"):  # an exported file (melnas-export; --int8): scored in onnxruntime
        return evaluate_onnx_file(settings.model, out_dir=run.out_dir, cache_dir=settings.cache_dir,
                                  split=settings.split, latency=settings.latency_measure)
    return evaluate_checkpoint(
        settings.model, out_dir=run.out_dir, cache_dir=settings.cache_dir, split=settings.split,
        batch_size=settings.batch_size, device=settings.device, latency=settings.latency_measure,
    )


def work(cfg: DictConfig, run: HydraRun) -> None:
    print(format_summary(evaluate(cfg, run)))
    print(f"metrics: {run.out_dir / 'metrics.json'}")
    print(f"confusion matrix: {run.out_dir / 'confusion_matrix.png'}")


@hydra_app("eval", taken_from=MODEL_RECORDS)
def main(cfg: DictConfig) -> None:
    run_hydra_app("eval", work, cfg)


if __name__ == "__main__":
    main()
