"""melnas-synth: write the bundled instrument data set (one folder per class)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from experiments.cli import HydraRun, run_hydra_app
from experiments.hydra_app import hydra_app
from experiments.settings import plain, settings_from
from nas.data.synth import SynthSettings, synthesize


@dataclass(frozen=True)
class SynthApp:
    """``conf/synth.yaml``'s own keys (the ``synth`` group is ``nas.data.synth.SynthSettings``)."""

    progress: bool = True


def synth(cfg: DictConfig, run: HydraRun) -> None:
    app = settings_from(cfg, SynthApp, skip=("synth",))
    report = synthesize(SynthSettings.from_config(plain(cfg.synth)), progress=app.progress)
    print(report.summary())
    print(f"next: melnas-prepare data.root={report.out_dir}")


@hydra_app("synth")
def main(cfg: DictConfig) -> None:
    run_hydra_app("synth", synth, cfg)


if __name__ == "__main__":
    main()
