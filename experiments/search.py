"""melnas-search: run (or resume) an ENAS search; see conf/search.yaml for examples."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.data.errors import DataError
from nas.io.checkpoint import CheckpointError
from nas.search.loop import run_search


@hydra.main(version_base="1.3", config_path="../conf", config_name="search")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        outcome = run_search(cfg, run_dir=run_dir)
    except (DataError, CheckpointError) as error:
        print(f"melnas-search: {error}", file=sys.stderr)
        sys.exit(2)
    if not outcome.finished:
        print(f"stopped after epoch {outcome.epochs_done}; continue with:\n"
              f"  melnas-search resume=true hydra.run.dir={run_dir} <the same overrides>")
        return
    print(f"best arch: {run_dir / 'best_arch.json'}  (top {len(outcome.top)}: {run_dir / 'top_archs.json'})")
    print(f"log: {run_dir / 'search_log.jsonl'}  tensorboard --logdir {run_dir / 'tensorboard'}")


if __name__ == "__main__":
    main()
