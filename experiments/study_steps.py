"""The demo's matched-budget comparison over several seeds (``melnas-study``).

For every seed in ``study.seeds`` the demo's own steps (``experiments.demo_steps``: one
search per controller on the same experiment, every winner and preset retrained with the
same recipe) run into ``<out_dir>/seed_<s>/``; no second pipeline. Then the retrainings'
``metrics.json`` become the study's report (``nas.evaluate.study_report``)::

    <out_dir>/seed_<s>/search_<controller>/     melnas-search run dirs
    <out_dir>/seed_<s>/train_<name>_t<t>/       retrainings (training seed t)
    <out_dir>/study.md, study.csv, study_summary.json, study.png

Resuming: a step whose output exists (``best_arch.json``, ``metrics.json``) is skipped,
a search with a checkpoint but no ``best_arch.json`` continues from it; so rerunning the
same command with the same ``hydra.run.dir`` finishes an interrupted study, and a run
with more seeds only runs the new ones.

Parallel: ``study.jobs`` processes (null: one per 4 cores, so one on a 2-core laptop),
each with ``cores // jobs`` torch threads. The first search of each seed and the preset
retrainings go first, the searches that follow its supernet (``demo.share_supernet``) next,
the winners' retrainings once their searches are done. Latency in ``metrics.json`` is timed
while other jobs run, so with ``jobs > 1`` it is noisier than in a sequential study.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from experiments.demo_steps import (
    DemoSettings, Step, follows_another_search, plan_steps, run_step, step_done, synthesise_if_missing,
)
from experiments.settings import plain, settings_from
from nas.data.prepare import prepare_dataset
from nas.evaluate.study_report import StudyReport, read_row, retime_side_by_side, write_study_report
from nas.evaluate.study_stats import PRESET_PREFIX, Bootstrap

log = logging.getLogger("melnas.study")


@dataclass(frozen=True)
class StudySettings(DemoSettings):
    """The ``study`` group of ``conf/study.yaml``: the demo's settings plus the seeds."""

    controllers: list[str] = field(default_factory=lambda: ["enas_lstm", "random", "evolution"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    train_seeds: list[int] | None = None  # null: each round's search seed
    baseline: str = "random"
    jobs: int | None = None
    bootstrap: Bootstrap = field(default_factory=Bootstrap)
    resolve_effect: float = 0.01  # study.md: the search seeds a difference of this size would need

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.seeds:
            raise ValueError("study.seeds is empty: give at least one search seed")
        if not self.resolve_effect > 0:
            raise ValueError(f"study.resolve_effect must be > 0 (an accuracy difference, e.g. 0.01), "
                             f"got {self.resolve_effect}")
        if self.jobs is not None and self.jobs < 1:
            raise ValueError(f"study.jobs must be >= 1 or null, got {self.jobs}")

    def demo_node(self) -> dict:
        """The ``demo`` group the demo's steps are planned from."""
        names = {f.name for f in DemoSettings.__dataclass_fields__.values()}
        return {k: v for k, v in asdict(self).items() if k in names}


@dataclass(frozen=True)
class StudyApp:
    study: StudySettings = field(default_factory=StudySettings)


@dataclass
class StudyResult:
    out_dir: Path
    report: StudyReport
    ran: list[str]  # the steps this call ran (the others were done already)
    seconds: float


def plan_study(cfg: DictConfig, out_dir: Path) -> list[tuple[Path, int, Step]]:
    """(round dir, search seed, step) for every step of every seed, composed up front."""
    study = settings_from(cfg, StudyApp, skip=("data",)).study
    planned: list[tuple[Path, int, Step]] = []
    first_dir: dict[tuple[str, ...], Path] = {}
    for seed in study.seeds:
        round_dir = out_dir / f"seed_{seed}"
        demo_cfg = OmegaConf.create({"seed": seed, "demo": study.demo_node()})
        demo_cfg.data = cfg.data
        train_seeds = study.train_seeds if study.train_seeds is not None else [seed]
        # A step with the overrides of an earlier round's step (a preset retrained with one of
        # a fixed study.train_seeds) makes the same model: it runs once, in the first round's
        # directory, and every round reads it from there.
        planned += [(first_dir.setdefault(step.overrides, round_dir), seed, step)
                    for step in plan_steps(demo_cfg, round_dir, train_seeds)]
    return planned


def default_jobs(cores: int) -> int:
    """One job per 4 cores: sequential on a 2-core laptop, where two jobs only halve each other."""
    return max(1, cores // 4)


def run_study(cfg: DictConfig, out_dir: str | Path) -> StudyResult:
    """Run (or finish) the study ``conf/study.yaml`` describes into ``out_dir``."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    study = settings_from(cfg, StudyApp, skip=("data",)).study
    planned = plan_study(cfg, out_dir)
    synthesise_if_missing(OmegaConf.create({"data": cfg.data, "demo": study.demo_node()}))
    log.info("%s", prepare_dataset(plain(cfg.data), progress=study.progress).summary())

    unique = list({(d, step.name): (d, s, step) for d, s, step in planned}.values())
    todo = [(d, s, step) for d, s, step in unique if not step_done(step, d)]
    for d, _, step in unique:
        if step_done(step, d):
            log.info("done already: %s", d / step.name)
    cores = os.cpu_count() or 1
    jobs = study.jobs or default_jobs(cores)
    threads = max(1, cores // jobs)
    # searches that follow another's supernet wait for it, the winners' retrainings for them all
    winners = [t for t in todo if t[2].kind == "train" and t[2].name.startswith(_winner_prefixes(study))]
    followers = [t for t in todo if follows_another_search(t[2])]
    first = [t for t in todo if t not in winners and t not in followers]
    for batch in (first, followers, winners):
        _run_batch(batch, jobs=jobs, threads=threads)

    rows = [read_row(d / step.name, method=_method(step, study), seed=seed,
                     train_seed=int(step.name.rsplit("_t", 1)[1]))
            for d, seed, step in planned if step.kind == "train"]
    if study.remeasure_rounds > 0:
        log.info("re-timing %d models side by side (%d rounds)", len(rows), study.remeasure_rounds)
        rows = retime_side_by_side(rows, study.remeasure_rounds)
    budget = {"seeds": list(study.seeds), "train_seeds": study.train_seeds or "search seed",
              "experiment": study.experiment, "search_overrides": list(study.search_overrides),
              "train_recipe": study.train_recipe, "train_overrides": list(study.train_overrides),
              "latency": (f"every model re-timed side by side after the runs (median of {study.remeasure_rounds} rounds)"
                          if study.remeasure_rounds > 0 else "as each retraining measured it")}
    report = write_study_report(rows, out_dir, baseline=study.baseline, bootstrap=study.bootstrap, budget=budget,
                                resolve_effect=study.resolve_effect, winner_scores=winner_scores(planned))
    return StudyResult(out_dir, report, [f"{d.name}/{step.name}" for d, _, step in todo],
                       time.perf_counter() - start)


def winner_scores(planned: list[tuple[Path, int, Step]]) -> dict[str, dict[int, float]]:
    """controller -> search seed -> the final phase's score of its winner (``best_arch.json``),
    for the seeds whose searches scored on one supernet (``scored_on_one_supernet``)."""
    searches: dict[int, list[tuple[Path, Step]]] = {}
    for round_dir, seed, step in planned:
        if step.kind == "search":
            searches.setdefault(seed, []).append((round_dir, step))
    scores: dict[str, dict[int, float]] = {}
    for seed, steps in searches.items():
        if not scored_on_one_supernet([step for _, step in steps]):
            continue
        for round_dir, step in steps:
            winner = json.loads((round_dir / step.name / "best_arch.json").read_text())
            scores.setdefault(step.name.removeprefix("search_"), {})[seed] = float(winner["accuracy"])
    return scores


def scored_on_one_supernet(searches: list[Step]) -> bool:
    """Whether one seed's searches (the first of them the leader) picked their winners on one
    supernet: every other search loads the first's (``study.share_supernet``), or all train
    it under the sandwich rule, whose shared weights do not depend on the controller
    (``nas/search/loop.py``). Under ``trainer.sampling=controller`` each trains its own."""
    return (all(follows_another_search(step) for step in searches[1:])
            or all(step.cfg.trainer.sampling == "sandwich" for step in searches))


def _winner_prefixes(study: StudySettings) -> tuple[str, ...]:
    return tuple(f"train_{c}_t" for c in study.controllers)


def _method(step: Step, study: StudySettings) -> str:
    name = step.name.removeprefix("train_").rsplit("_t", 1)[0]
    return name if name in study.controllers else f"{PRESET_PREFIX}{name}"


def _run_batch(batch: list[tuple[Path, int, Step]], *, jobs: int, threads: int) -> None:
    if not batch:
        return
    if jobs == 1:
        for round_dir, _, step in batch:
            _run_one(step, round_dir, None)
        return
    # spawn: a fresh interpreter per worker (torch and forked OpenMP pools do not mix)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run_one, step, round_dir, threads) for round_dir, _, step in batch]
        for future in futures:
            future.result()


def _run_one(step: Step, round_dir: Path, threads: int | None) -> None:
    log.info("== %s/%s", round_dir.name, step.name)
    begin = time.perf_counter()
    run_step(step, round_dir, threads=threads)
    log.info("== %s/%s done in %.1f s", round_dir.name, step.name, time.perf_counter() - begin)
