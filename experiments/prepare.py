"""melnas-prepare: build (or reuse) the log-mel cache of a folder or manifest of audio."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from experiments.cli import HydraRun, run_hydra_app
from experiments.hydra_app import hydra_app
from experiments.settings import plain, settings_from
from nas.data.prepare import prepare_dataset


@dataclass(frozen=True)
class PrepareApp:
    """``conf/prepare.yaml``'s own keys (the ``data`` group is ``nas.data.prepare.PrepareSettings``)."""

    progress: bool = True


def prepare(cfg: DictConfig, run: HydraRun) -> None:
    app = settings_from(cfg, PrepareApp, skip=("data",))
    report = prepare_dataset(plain(cfg.data), progress=app.progress)
    print(report.summary())  # ends with a warning when many files were skipped


@hydra_app("prepare")
def main(cfg: DictConfig) -> None:
    run_hydra_app("prepare", prepare, cfg)


if __name__ == "__main__":
    main()
