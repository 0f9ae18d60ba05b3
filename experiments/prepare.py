"""melnas-prepare: build (or reuse) the log-mel cache of a folder or manifest of audio."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from nas.data.errors import DataError
from nas.data.prepare import prepare_dataset


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    try:
        report = prepare_dataset(cfg.data, progress=cfg.progress)
    except DataError as error:
        print(f"melnas-prepare: {error}", file=sys.stderr)
        sys.exit(2)
    print(report.summary())  # ends with a warning when many files were skipped


if __name__ == "__main__":
    main()
