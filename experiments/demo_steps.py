"""The whole melnas journey in one process (``melnas-demo``, ``make search``).

Synthesise the bundled data set (skipped when its folder already holds audio), prepare
it (the cache is reused when up to date), run one search per controller with the same
experiment (so the baselines get the ENAS search's budget exactly), retrain each
search's winner and each preset with the same recipe, and compare everything::

    <out_dir>/search_<controller>/   one melnas-search run dir per controller
    <out_dir>/train_<controller>/    its winner retrained (melnas-train)
    <out_dir>/train_<preset>/        each preset retrained
    <out_dir>/compare/               compare.md, compare.csv, pareto.png
    <out_dir>/demo_summary.json      what ran, how long each step took

Each step calls the same plain function as its console command, with a config composed
from the same YAML files; the composed config is saved in the step's ``.hydra/``.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import yaml
from omegaconf import DictConfig, open_dict

from experiments.cli import HydraRun
from experiments.compose import compose_config, compose_step, job_config, save_step_config
from experiments.resume_overrides import STARTED_WITH
from experiments.search import search
from experiments.settings import plain, settings_from
from experiments.train import train
from nas.data.prepare import prepare_dataset
from nas.data.synth import SynthSettings, differences_from_record, record_path, synthesize
from nas.evaluate.compare import Comparison, compare_runs
from nas.runtime import torch_threads
from nas.search.resume import CHECKPOINT
from nas.search.shared_supernet import snapshot_path

log = logging.getLogger("melnas.demo")
FOLLOW = "trainer.supernet_from="  # the override that makes a search follow another's supernet


@dataclass(frozen=True)
class DemoSettings:
    """The ``demo`` group of ``conf/demo.yaml`` (documented there)."""

    synth_overrides: list[str] = field(default_factory=list)
    controllers: list[str] = field(default_factory=lambda: ["enas_lstm", "random"])
    experiment: str | None = "quick"
    search_overrides: list[str] = field(default_factory=list)
    presets: list[str] = field(default_factory=lambda: ["mobilenetv3_small"])
    preset_overrides: list[str] = field(default_factory=list)
    train_recipe: str = "quick"
    train_overrides: list[str] = field(default_factory=list)
    progress: bool = True
    remeasure_rounds: int = 5
    # The searches after the first follow its supernet instead of training the same one again
    # (trainer.supernet_from; not with trainer.sampling=controller, where it is not the same)
    share_supernet: bool = True

    def __post_init__(self) -> None:
        if not self.controllers:
            raise ValueError("demo.controllers is empty: name at least one conf/controller option")


@dataclass(frozen=True)
class DemoApp:
    """``conf/demo.yaml``'s own keys (``data`` is passed to every step as it is)."""

    seed: int = 0
    demo: DemoSettings = field(default_factory=DemoSettings)


@dataclass
class DemoResult:
    out_dir: Path
    comparison: Comparison
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall time


@contextmanager
def _timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    log.info("== %s", step)
    yield
    seconds[step] = time.perf_counter() - start
    log.info("== %s done in %.1f s", step, seconds[step])


@dataclass(frozen=True)
class Step:
    """One search or training run of the demo, its config composed before anything runs."""

    name: str  # also its run dir under the demo's output dir
    kind: str  # "search" or "train"
    cfg: DictConfig  # composed with its hydra node
    overrides: tuple[str, ...]


def plan_steps(cfg: DictConfig, out_dir: Path, train_seeds: Sequence[int] | None = None) -> list[Step]:
    """Compose every step's config up front: all searches see the same config files (the
    matched budget holds even if a YAML changes while the demo runs), and a bad override
    fails before hours of work instead of after. ``train_seeds`` (melnas-study) retrains
    every arch once per seed, as ``train_<name>_t<seed>``; by default once, with ``seed``."""
    app = settings_from(cfg, DemoApp, skip=("data",))
    demo = app.demo
    steps = search_steps(demo, app.seed, out_dir, cfg.data)
    archs = [(f"train_{c}", str(out_dir / f"search_{c}" / "best_arch.json"), []) for c in demo.controllers]
    archs += [(f"train_{preset}", preset, list(demo.preset_overrides)) for preset in demo.presets]
    seeds = [(app.seed, "")] if train_seeds is None else [(t, f"_t{t}") for t in train_seeds]
    for name, arch, extra in archs:
        for seed, suffix in seeds:
            overrides = [f"arch={arch}", f"train={demo.train_recipe}", f"seed={seed}", *demo.train_overrides, *extra]
            steps.append(Step(name + suffix, "train", compose_step("train", overrides, cfg.data), tuple(overrides)))
    return steps


def search_steps(demo: DemoSettings, seed: int, out_dir: Path, data: DictConfig) -> list[Step]:
    """One search per controller with the same budget. With ``demo.share_supernet`` the first
    keeps its epochs' shared weights and the others follow them (``trainer.supernet_from``):
    the supernet is trained once, as each search would have trained it alike."""
    def overrides(controller: str, *extra: str) -> list[str]:
        return [f"controller={controller}", *([f"experiment={demo.experiment}"] if demo.experiment else []),
                f"seed={seed}", f"trainer.progress={demo.progress}", *demo.search_overrides, *extra]

    def step(controller: str, *extra: str) -> Step:
        chosen = overrides(controller, *extra)
        return Step(f"search_{controller}", "search", compose_step("search", chosen, data), tuple(chosen))

    first, *others = demo.controllers
    leader = step(first)
    leader_dir = out_dir / leader.name
    if not (demo.share_supernet and others and shares_its_supernet(leader) and can_lead(leader_dir)):
        return [leader, *(step(c) for c in others)]
    source = f"{FOLLOW}{leader_dir.absolute()}"
    followers = []
    for controller in others:
        if started_as_follower(out_dir / f"search_{controller}") is False:
            log.info("search_%s in %s trains its own supernet: it was started so", controller, out_dir)
            followers.append(step(controller))
        else:
            followers.append(step(controller, source))
    return [step(first, "trainer.keep_epoch_supernets=true"), *followers]


def shares_its_supernet(search: Step) -> bool:
    """Whether the supernet ``search`` trains is every controller's (not under controller sampling)."""
    return search.cfg.trainer.sampling != "controller"


def can_lead(run_dir: Path) -> bool:
    """Whether other searches can follow the search in ``run_dir``: it has not started yet, or
    it kept its first epoch's weights (a study begun before melnas shared supernets did not)."""
    return not (run_dir / CHECKPOINT).is_file() or snapshot_path(run_dir, 0).is_file()


def started_as_follower(run_dir: Path) -> bool | None:
    """Whether the search in ``run_dir`` was started with ``trainer.supernet_from`` (None: not
    started): a resume must keep what it began with."""
    if not (run_dir / CHECKPOINT).is_file():
        return None
    record = run_dir / STARTED_WITH
    started_with = yaml.safe_load(record.read_text()) if record.is_file() else []
    return any(str(o).startswith(FOLLOW) for o in started_with or [])


def follows_another_search(step: Step) -> bool:
    """A search that loads another's shared weights (it runs after that one)."""
    return any(o.startswith(FOLLOW) for o in step.overrides)


def step_done(step: Step, out_dir: Path) -> bool:
    """Whether ``step`` already ran to its end in ``out_dir`` (a study skips it then)."""
    return (out_dir / step.name / ("best_arch.json" if step.kind == "search" else "metrics.json")).is_file()


def run_step(step: Step, out_dir: Path, *, threads: int | None = None) -> None:
    """Run one step into ``out_dir/<step.name>``; a search that stopped part-way (its
    checkpoint is there, its ``best_arch.json`` not) is resumed, not restarted."""
    run_dir = out_dir / step.name
    cfg, overrides = step.cfg, step.overrides
    if step.kind == "search" and (run_dir / "checkpoints" / "last.pt").is_file():
        cfg = cfg.copy()
        with open_dict(cfg):
            cfg.resume = True
        overrides = (*overrides, "resume=true")
    save_step_config(run_dir, cfg, overrides)
    run = HydraRun.composed(cfg, run_dir)  # the step's config-group choices name its controller
    with torch_threads(threads):
        if step.kind == "search":
            outcome = search(job_config(cfg), run)
            if not outcome.finished:
                raise RuntimeError(f"the search in {run_dir} stopped before its end")
        else:
            train(job_config(cfg), run)


def run_demo(cfg: DictConfig, out_dir: str | Path) -> DemoResult:
    """Run the journey described by ``conf/demo.yaml`` into ``out_dir``."""
    out_dir = Path(out_dir)
    demo = settings_from(cfg, DemoApp, skip=("data",)).demo
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    steps = plan_steps(cfg, out_dir)

    with _timed(seconds, "synthesise"):
        synthesise_if_missing(cfg)
    with _timed(seconds, "prepare"):
        report = prepare_dataset(plain(cfg.data), progress=demo.progress)
        log.info("%s", report.summary())

    for step in steps:
        with _timed(seconds, step.name):
            run_step(step, out_dir)

    with _timed(seconds, "compare"):
        comparison = compare_runs(
            [out_dir / step.name for step in steps], out_dir / "compare",
            remeasure_rounds=demo.remeasure_rounds,
        )
    seconds["total"] = sum(seconds.values())
    (out_dir / "demo_summary.json").write_text(json.dumps({
        "seconds": seconds,
        "controllers": demo.controllers,
        "presets": demo.presets,
        "experiment": demo.experiment,
        "train_recipe": demo.train_recipe,
        "compare": str(comparison.markdown_path),
        "plot": str(comparison.plot_path),
    }, indent=2) + "\n")
    return DemoResult(out_dir=out_dir, comparison=comparison, seconds=seconds)


def synthesise_if_missing(cfg: DictConfig) -> None:
    """Write the bundled instrument set into ``data.root``, unless ``data.root`` holds audio
    that melnas-synth did not write (the user's own folder) or ``data.manifest`` is set.
    ``synthesize`` itself reuses an unchanged set, so a second demo run costs nothing here.
    A set that melnas-synth wrote with other settings (``melnas-synth
    synth.files_per_class=288 ...``, or an older default) is used as it is, never
    re-rendered over: the log names the settings that differ and how to re-make it."""
    root = Path(cfg.data.root)
    ours = record_path(root).is_file()
    if cfg.data.manifest or (not ours and root.is_dir() and any(p.is_file() for p in root.rglob("*"))):
        log.info("data: using %s as it is", cfg.data.manifest or root)
        return
    demo = settings_from(cfg.demo, DemoSettings, prefix="demo")
    synth_cfg = compose_config("synth", demo.synth_overrides)
    settings = SynthSettings.from_config({**plain(synth_cfg.synth), "out_dir": str(root)})
    differing = differences_from_record(settings)
    if differing:
        log.warning("data: %s was written by melnas-synth with other settings (%s); using it as it is. "
                    "To re-make it with these settings: melnas-synth synth.out_dir=%s %s",
                    root, "; ".join(differing), root, " ".join(shlex.quote(o) for o in demo.synth_overrides))
        return
    log.info("%s", synthesize(settings, progress=demo.progress).summary())


def step_table(result: DemoResult) -> str:
    """Wall time per step, for the console."""
    width = max(len(step) for step in result.seconds)
    return "\n".join(f"{step:<{width}}  {s / 60:5.1f} min" for step, s in result.seconds.items())
