"""melnas-search: run (or resume) an ENAS search; see conf/search.yaml for examples."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from experiments.cli import HydraRun, hydra_worker_overrides, run_hydra_app
from experiments.hydra_app import hydra_app
from experiments.referee_searches import train_referee_searches
from experiments.resume_overrides import fill_resume_overrides, record_overrides
from experiments.settings import build, plain, settings_from
from nas.distributed import process_group, world_from_env
from nas.errors import MelnasError
from nas.runtime import resolve_device
from nas.search.loop import SearchInputs, SearchOutcome, SearchSettings, run_search
from nas.search.resume import CHECKPOINT
from nas.search.rank.job import SearchRun
from nas.search.referees import Referee
from nas.search.reward import RewardBuilder

# Config groups that are not settings: passed on as data, or built into objects here.
NOT_SETTINGS = ("data", "search_space", "controller", "reward")


def search(cfg: DictConfig, run: HydraRun) -> SearchOutcome:
    """The search ``cfg`` (conf/search.yaml, composed) describes, in ``run.out_dir``."""
    settings = settings_from(cfg, SearchSettings, skip=NOT_SETTINGS)
    if not settings.resume and not (run.out_dir / CHECKPOINT).exists() and world_from_env().is_writer:
        record_overrides(run.out_dir, run.overrides)  # what resume=true fills in (experiments/resume_overrides.py)
    # under torchrun one process group serves the referee searches and the search (nas/distributed.py)
    with process_group(resolve_device(settings.trainer.device)):
        trained = train_referee_searches(cfg, run.overrides, search)
        inputs = SearchInputs(
            data=plain(cfg.data), space_config=plain(cfg.search_space), controller=build(cfg.controller),
            reward=reward_builder(cfg.reward), controller_name=run.choices.get("controller"), config=plain(cfg),
            referees=referees_from([*settings.trainer.final.referees, *trained], setting="trainer.final.referees"),
        )
        return run_search(settings, inputs, run_dir=run.out_dir)


def search_run(run_dir: Path, *, setting: str = "run") -> SearchRun:
    """The settings and config groups a search ran with (its ``.hydra/config.yaml``)."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise MelnasError(f"{setting}: {path} is missing: {run_dir} is not a directory melnas-search wrote")
    cfg = OmegaConf.load(path)
    if "latency_table" in cfg and "runtime" not in cfg.latency_table:
        # searched before latency runtimes existed: its table was timed in eager torch
        cfg.latency_table.runtime = "torch"
    return SearchRun(settings=settings_from(cfg, SearchSettings, skip=NOT_SETTINGS),
                     data=plain(cfg.data), space_config=plain(cfg.search_space))


def referees_from(run_dirs: Sequence[str], *, setting: str) -> list[Referee]:
    """The finished searches ``setting`` names, read as referees."""
    referees = []
    for run_dir in map(Path, run_dirs):
        run = search_run(run_dir, setting=setting)
        referees.append(Referee(run_dir=run_dir, space_config=run.space_config, data_cache_dir=run.data["cache_dir"],
                                few_shot=run.settings.trainer.few_shot))
    return referees


def reward_builder(node: DictConfig) -> RewardBuilder:
    """The ``reward`` group as a builder: its ``target_ms`` may name a preset of the space."""
    target = node.get("target_ms")
    return RewardBuilder(make=partial(build, node), target_ms=target)


def resume_hint(run: HydraRun, *, referee_searches: int = 0) -> str | None:
    """After Ctrl-C: the command that continues the run, once an epoch has been checkpointed;
    before that, with referee searches, that running it again keeps what they trained."""
    if not (run.out_dir / CHECKPOINT).is_file():
        return ("run the same command again to continue: finished referee searches are reused and an "
                "interrupted one continues from its last checkpoint") if referee_searches else None
    return f"continue from its last checkpoint with: melnas-search resume=true hydra.run.dir={run.out_dir}"


def report(outcome: SearchOutcome) -> None:
    run_dir = Path(outcome.run_dir)
    if not world_from_env().is_writer:
        return
    if not outcome.finished:
        print(f"stopped after epoch {outcome.epochs_done}; continue with:\n"
              f"  melnas-search resume=true hydra.run.dir={run_dir}")
        return
    print(f"best arch: {run_dir / 'best_arch.json'}  (top {len(outcome.top)}: {run_dir / 'top_archs.json'})")
    print(f"log: {run_dir / 'search_log.jsonl'}  tensorboard --logdir {run_dir / 'tensorboard'}")


@hydra_app("search")
def hydra_main(cfg: DictConfig) -> None:
    run_hydra_app("search", lambda cfg, run: report(search(cfg, run)), cfg, after_interrupt=partial(
        resume_hint, referee_searches=int(cfg.trainer.final.referee_searches)))


def main() -> None:
    """``melnas-search``; also each rank of ``torchrun ... melnas-search``."""
    fill_resume_overrides(sys.argv)
    hydra_worker_overrides()
    hydra_main()


if __name__ == "__main__":
    main()
