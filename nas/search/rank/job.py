"""``run_rank``: score archs with a finished search's supernet and compare with the same
archs trained standalone (``melnas-rank``; experiments/rank.py passes the settings, the
search's own settings and config groups, and the optimizer factory).

Steps: load ``checkpoints/last.pt`` (weights only) into the space's supernet; draw the
archs (``draw.archs_to_rank``: the search's top archs and a latency-stratified spread),
or with ``rank.truths`` take them and their standalone results from an earlier check;
score each on the whole validation split under every ``rank.bn_modes`` (the first is the
headline), and under the headline mode with the supernets of ``rank.referees`` (other
searches of the same space and data: the mean of several supernets' scores); train each
standalone with ``train=rank`` (``standalone``: cached, resumable, parallel); write ``rank.csv``,
``rank.json``, ``rank.png`` (``report``) and ``standalone.json`` (``truths``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any, Callable, Mapping, Sequence

import torch

from nas.data.dataset import make_loader, open_prepared
from nas.errors import MelnasError
from nas.io.checkpoint import load_checkpoint
from nas.io.model_file import to_plain
from nas.io.registry import build_space
from nas.latency.measure import latency_table_for
from nas.runtime import resolve_device, torch_threads
from nas.search.loop import CHECKPOINT, SearchSettings
from nas.search.rank.draw import archs_to_rank
from nas.search.referees import Referee, check_referees, load_referees, load_supernet
from nas.search.resume import check_same_data
from nas.search.rank.report import (
    agreement, attainable_tau, search_top_placement, seed_agreement, write_csv, write_json, write_plot,
)
from nas.search.rank.stats import kendall_tau
from nas.search.rank.truths import FILE_NAME as TRUTHS_FILE, Standalone, Truth, read_truths, write_truths
from nas.search.rank.standalone import (
    StandaloneJob, entry_key, entry_path, network_digest, stored_entry, threads_per_job, train_missing,
)
from nas.search.refit import check_refit, first_examples
from nas.search.scoring import ArchScorer, LatencyLookup, check_bn_mode
from nas.train.job import TrainSettings
from nas.train.loop import few_steps_warning
from search_spaces.base import Arch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankSettings:
    """The ``rank`` node of ``conf/rank.yaml`` (documented there)."""

    num_archs: int = 20
    top_archs: int = 5
    seed: int = 0
    pool: int = 400
    bn_modes: list[str] = field(default_factory=lambda: ["recalibrate", "batch", "running"])
    recalibration_batches: int = 4
    refit_examples: int = 0  # > 0: each arch scored with its output layer refitted on that many train examples
    refit_l2: float = 1e-4
    cache_dir: str | None = None
    jobs: int = 1
    threads: int | None = None  # torch threads per training; None: cores // jobs
    train_seeds: list[int] = field(default_factory=lambda: [0])  # standalone accuracy: the mean over these
    # other search runs whose supernets score the archs too; None: those the search picked with
    referees: list[str] | None = None
    # an earlier check's standalone.json (or its folder): its archs and standalone results, no training
    truths: str | None = None

    def __post_init__(self) -> None:
        if not self.bn_modes:
            raise ValueError("rank.bn_modes is empty: give at least one of batch, recalibrate, running")
        for mode in self.bn_modes:
            check_bn_mode(mode)
        if not self.train_seeds or len(set(self.train_seeds)) != len(self.train_seeds):
            raise ValueError(f"rank.train_seeds={self.train_seeds}: give one or more distinct seeds")
        check_refit(self.refit_examples, self.refit_l2, setting="rank")
        if self.jobs < 1 or self.recalibration_batches < 1 or self.pool < 1 or (self.threads or 1) < 1:
            raise ValueError(f"rank.jobs={self.jobs}, rank.recalibration_batches={self.recalibration_batches}, "
                             f"rank.pool={self.pool} and rank.threads={self.threads} must be >= 1")


@dataclass(frozen=True)
class RankJob:
    """``conf/rank.yaml``: the search run to rank, how, and the standalone recipe."""

    run: str
    rank: RankSettings = field(default_factory=RankSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.train.space_overrides:
            raise ValueError("train.space_overrides must be empty for melnas-rank: the standalone archs are "
                             "built in the space the supernet was trained in")


@dataclass(frozen=True)
class SearchRun:
    """What ``run_rank`` needs of the search: its settings and its data and space configs."""

    settings: SearchSettings
    data: Mapping[str, Any]
    space_config: Mapping[str, Any]


def run_rank(job: RankJob, search: SearchRun, *, out_dir: str | Path,
             optimizer_factory: Callable[..., torch.optim.Optimizer],
             referees: Sequence[Referee] = ()) -> dict[str, Any]:
    """Rank the archs of ``job.run``; write the report into ``out_dir``; return ``rank.json``'s content.

    ``referees``: the searches of ``job.rank.referees``, already read.
    """
    started = time.perf_counter()
    run_dir, out_dir, r = Path(job.run), Path(out_dir), job.rank
    top_file = run_dir / "top_archs.json"
    if not top_file.is_file():
        raise MelnasError(f"{run_dir} is not a finished search (no top_archs.json): pass run=<a search run directory>")
    data = open_prepared(search.data["cache_dir"])
    split_identity = data.split_identity  # a digest of every window's source and split: computed once
    check_same_data(load_checkpoint(run_dir / CHECKPOINT), split_identity, run_dir=run_dir,
                    cache_dir=search.data["cache_dir"], setting="run",
                    remedy="rank a search of the data as it is now, or put the recordings and settings back as they were "
                           "for this search")
    check_referees(referees, space_config=search.space_config, data_cache_dir=search.data["cache_dir"],
                   split_identity=split_identity, setting="rank.referees", run_dir=run_dir)
    device = resolve_device(job.device)
    space = build_space(dict(search.space_config))
    windows = len(data.rows("train"))
    if warning := few_steps_warning(windows // job.train.batch_size, job.train.batch_size, windows, "train.batch_size"):
        log.warning("the standalone trainings: %s", warning)

    shape = dict(num_classes=data.num_classes, input_shape=data.input_shape, device=device)
    supernet = load_supernet(run_dir / CHECKPOINT, search.settings.trainer.few_shot, space, **shape)
    table = latency_table_for(space, num_classes=data.num_classes, input_shape=data.input_shape,
                              seed=search.settings.seed, **search.settings.latency_table.kwargs())
    latency = LatencyLookup(table.predict_arch, space)

    def network_of(arch: Arch) -> str:
        return network_digest(space.build(arch, num_classes=data.num_classes, input_shape=data.input_shape))

    given, given_recipe = (read_truths(r.truths, space, split_identity=split_identity, space_config=search.space_config,
                                       network_of=network_of) if r.truths else ([], {}))
    chosen = ([(t.arch, t.origin) for t in given] if given else
              archs_to_rank(space, latency, num_archs=r.num_archs, top=json.loads(top_file.read_text()),
                            top_archs=r.top_archs, seed=r.seed, pool=r.pool))
    log.info("ranking %d archs of %s (%s)", len(chosen), run_dir,
             f"the archs and standalone results of {r.truths}" if given else
             f"{sum(origin == 'top' for _, origin in chosen)} from the search's top")

    archs = [a for a, _ in chosen]
    with torch_threads(r.threads):
        batches = scoring_batches(data, r, search.settings.trainer.val_batch_size, device)
        scores = score_archs(supernet, archs, batches, r.bn_modes, refit_l2=r.refit_l2)
        by_referee = [score_archs(net, archs, batches, r.bn_modes[:1], refit_l2=r.refit_l2)[r.bn_modes[0]]
                      for net in load_referees(referees, space, **shape)]
    # the headline mode's scores of the referees (their mean), and of them with the run's own
    referees_mean = [mean(one) for one in zip(*by_referee)] if referees else []
    ensemble = [mean(one) for one in zip(scores[r.bn_modes[0]], *by_referee)]
    scored_s = time.perf_counter() - started

    if given:
        truths = given
        standalone = {"truths": str(r.truths), "seeds": sorted(given[0].standalone.val_by_seed), "trained_now": 0,
                      "reused": 0, "recipe": given_recipe}
    else:
        truths, standalone = train_truths(job, search, data, chosen, network_of, optimizer_factory)

    seeds = standalone["seeds"]
    rows = [{
        "hash": t.arch.hash, "arch_str": space.arch_string(t.arch), "origin": t.origin, "latency_ms": latency(t.arch),
        **{f"supernet_{mode}": scores[mode][i] for mode in r.bn_modes},
        **({"supernet_referees": referees_mean[i], "supernet_ensemble": ensemble[i]} if referees else {}),
        "standalone_val": t.standalone.val, "standalone_test": t.standalone.test,
        **{f"standalone_val_seed{s}": t.standalone.val_by_seed[s] for s in seeds},
    } for i, t in enumerate(truths)]
    val = [row["standalone_val"] for row in rows]
    seed_tau = seed_agreement([[t.standalone.val_by_seed[s] for t in truths] for s in seeds])
    headline = agreement(scores[r.bn_modes[0]], val)
    summary = {
        "run": str(run_dir), "num_archs": len(rows), "bn_mode": r.bn_modes[0], **headline,
        "by_bn_mode": {mode: agreement(scores[mode], val) for mode in r.bn_modes},
        "vs_standalone_test": agreement(scores[r.bn_modes[0]], [row["standalone_test"] for row in rows]),
        "latency_baseline": agreement([row["latency_ms"] for row in rows], val),
        # given truths carry the top archs of the search that made them, not of this one
        "search_top": None if given else search_top_placement(
            [row["origin"] for row in rows], scores[r.bn_modes[0]], val, [row["latency_ms"] for row in rows]),
        "referees": ({"runs": [str(referee.run_dir) for referee in referees], **agreement(ensemble, val),
                      "referees_alone": agreement(referees_mean, val)}
                     if referees else None),
        "standalone_seed_tau": seed_tau,
        "attainable_tau": attainable_tau(seed_tau, len(seeds)),
        # the split's own noise, which seeds do not average away: how well the standalone
        # accuracies on val rank the same models on test
        "standalone_val_test_tau": kendall_tau(val, [row["standalone_test"] for row in rows]),
        "standalone": standalone,
        "rank": to_plain(asdict(r)), "scoring_s": scored_s, "total_s": time.perf_counter() - started,
    }
    write_truths(out_dir / TRUTHS_FILE, truths, space=space, split_identity=split_identity,
                 space_config=search.space_config, recipe=standalone["recipe"], num_classes=data.num_classes,
                 input_shape=data.input_shape)
    write_csv(rows, out_dir / "rank.csv")
    write_json(summary, out_dir / "rank.json")
    write_plot(rows, summary, out_dir / "rank.png")
    return summary


def train_truths(job: RankJob, search: SearchRun, data: Any, chosen: Sequence[tuple[Arch, str]],
                 network_of: Callable[[Arch], str], optimizer_factory: Callable[..., torch.optim.Optimizer],
                 ) -> tuple[list[Truth], dict[str, Any]]:
    """Each chosen arch trained standalone with every ``rank.train_seeds`` (the cached ones
    read back), and what ``rank.json`` says of the trainings."""
    r = job.rank
    cache = Path(r.cache_dir).expanduser() if r.cache_dir else Path(job.run) / "rank_cache"
    cache.mkdir(parents=True, exist_ok=True)
    keys = {seed: entry_key(train=job.train, space_config=search.space_config,
                            data_id=data.identity, seed=seed) for seed in r.train_seeds}
    networks = {arch.hash: network_of(arch) for arch, _ in chosen}
    jobs = [StandaloneJob(arch.to_json_dict(), dict(search.space_config), str(data.cache_dir), job.train,
                          optimizer_factory, seed, job.device, r.threads or threads_per_job(r.jobs),
                          str(entry_path(cache, arch.hash, keys[seed])), networks[arch.hash])
            for seed in r.train_seeds for arch, _ in chosen]
    trained_before = sum(stored_entry(j) is not None for j in jobs)
    entries = train_missing(jobs, processes=r.jobs, on_done=lambda e: log.info(
        "standalone %s: val %.4f test %.4f (%.0f s)", e["arch_str"], e["val_accuracy"], e["test_accuracy"], e["seconds"]))
    by_seed = {seed: entries[i * len(chosen):(i + 1) * len(chosen)] for i, seed in enumerate(r.train_seeds)}
    truths = [Truth(arch, origin, networks[arch.hash], Standalone(
        {s: by_seed[s][i]["val_accuracy"] for s in r.train_seeds},
        {s: by_seed[s][i]["test_accuracy"] for s in r.train_seeds})) for i, (arch, origin) in enumerate(chosen)]
    return truths, {"cache_dir": str(cache), "seeds": list(r.train_seeds), "keys": keys,
                    "trained_now": len(jobs) - trained_before, "reused": trained_before,
                    "recipe": to_plain(asdict(job.train))}


@dataclass(frozen=True)
class ScoringBatches:
    """What every supernet and arch is scored on, the same for all of them: the whole val
    split, the batchnorm recalibration batches and the output-layer refit batches (empty
    with ``rank.refit_examples=0``)."""

    val: list
    recalibration: list
    refit: list


def scoring_batches(data: Any, r: RankSettings, batch_size: int, device: torch.device) -> ScoringBatches:
    """``ScoringBatches`` on ``device``, the train ones from one shuffled stream of ``r.seed``."""
    def on_device(loader: Any) -> list:
        return [(x.to(device), y.to(device)) for x, y in loader]

    val = on_device(make_loader(data, "val", batch_size=batch_size, shuffle=False))
    if not val:
        raise MelnasError(f"the val split of {data.cache_dir} is empty: nothing to score the supernet on")
    train = on_device(batch for _, batch in zip(range(max(r.recalibration_batches, -(-r.refit_examples // batch_size))),
                                                make_loader(data, "train", batch_size=batch_size, shuffle=True,
                                                            seed=r.seed, drop_last=False)))
    return ScoringBatches(val=val, recalibration=train[:r.recalibration_batches],
                          refit=first_examples(train, r.refit_examples))


def score_archs(supernet: torch.nn.Module, archs: list, batches: ScoringBatches, bn_modes: Sequence[str], *,
                refit_l2: float = 1e-4) -> dict[str, list[float]]:
    """Each arch's supernet accuracy on the val split, per bn mode."""
    scores = {}
    for mode in bn_modes:
        with ArchScorer(supernet, bn_mode=mode, recalibration_batches=batches.recalibration,
                        refit_batches=batches.refit, refit_l2=refit_l2) as scorer:
            scores[mode] = scorer.accuracies(archs, batches.val)
    return scores
