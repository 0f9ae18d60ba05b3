"""melnas-eval: score a trained model.pt on a prepared cache; write metrics.json and plots."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.evaluate.metrics import evaluate_checkpoint, format_summary
from nas.latency.measure import LatencySettings


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = evaluate_checkpoint(
            cfg.model,
            out_dir=out_dir,
            cache_dir=cfg.cache_dir,
            split=cfg.split,
            batch_size=cfg.batch_size,
            device=cfg.device,
            latency=LatencySettings(**cfg.latency),
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"melnas-eval: {error}", file=sys.stderr)
        sys.exit(2)
    print(format_summary(metrics))
    print(f"metrics: {out_dir / 'metrics.json'}")
    print(f"confusion matrix: {out_dir / 'confusion_matrix.png'}")


if __name__ == "__main__":
    main()
