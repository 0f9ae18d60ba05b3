"""melnas-synth: write the bundled instrument data set (one folder per class)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from nas.data.errors import DataError
from nas.data.synth import SynthSettings, synthesize


@hydra.main(version_base="1.3", config_path="../conf", config_name="synth")
def main(cfg: DictConfig) -> None:
    try:
        report = synthesize(SynthSettings.from_config(cfg.synth), progress=cfg.progress)
    except DataError as error:
        print(f"melnas-synth: {error}", file=sys.stderr)
        sys.exit(2)
    print(report.summary())
    print(f"next: melnas-prepare data.root={report.out_dir}")


if __name__ == "__main__":
    main()
