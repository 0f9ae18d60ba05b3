"""melnas-rank: the ranking quality of a finished search's supernet; see conf/rank.yaml."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.cli import HydraRun, run_hydra_app
from experiments.hydra_app import hydra_app
from experiments.search import referees_from, search_run
from experiments.settings import build, plain, settings_from
from nas.search.rank.job import RankJob, run_rank


def rank(cfg: DictConfig, run: HydraRun) -> dict[str, Any]:
    """The ranking ``cfg`` (conf/rank.yaml, composed) describes, in ``run.out_dir``.

    The search's ``data`` group joins ``cfg`` first, so that a recipe reading it
    (``train=quick``'s ``batch_size: ${data.batch_size}``) resolves as in melnas-train.
    """
    run_dir = Path(plain(OmegaConf.masked_copy(cfg, ["run"]))["run"])
    search = search_run(run_dir)
    with open_dict(cfg):
        cfg.data = OmegaConf.create(search.data)
    job = settings_from(cfg, RankJob, skip=("data",))
    named = job.rank.referees if job.rank.referees is not None else search_referees(run_dir)
    referees = referees_from(named, setting="rank.referees")
    return run_rank(job, search, out_dir=run.out_dir, optimizer_factory=build(job.train.optimizer), referees=referees)


def search_referees(run_dir: Path) -> list[str]:
    """The referees a finished search picked its archs with (``search_summary.json``)."""
    path = run_dir / "search_summary.json"
    return list(json.loads(path.read_text()).get("final_referees", [])) if path.is_file() else []


def report(summary: dict[str, Any], out_dir: Path, *, referees_of_search: bool = False) -> None:
    print(f"{summary['num_archs']} archs, bn {summary['bn_mode']}: Kendall tau {summary['kendall_tau']:.3f}, "
          f"Spearman rho {summary['spearman_rho']:.3f}, supernet top-1 is standalone #{summary['top1_standalone_rank']}, "
          f"top-5 overlap {summary['top5_overlap']}/{min(5, summary['num_archs'])}")
    if math.isnan(summary["kendall_tau"]):
        print("  nan: one of the two orders is constant (rank.csv): every supernet score alike, or every standalone "
              "accuracy alike, i.e. the standalone models did not learn (a warning before the trainings says so if "
              "an epoch had too few steps: lower train.batch_size); the top-1 and top-5 figures then mean nothing")
    for mode, figures in summary["by_bn_mode"].items():
        print(f"  bn {mode}: tau {figures['kendall_tau']:.3f} rho {figures['spearman_rho']:.3f}")
    if summary["referees"]:
        ensemble = summary["referees"]
        whose = " (those the search picked with: its own scorer)" if referees_of_search else ""
        print(f"  with {len(ensemble['runs'])} referee supernet(s){whose}, the mean score: tau {ensemble['kendall_tau']:.3f} "
              f"rho {ensemble['spearman_rho']:.3f}, top-1 is standalone #{ensemble['top1_standalone_rank']}; "
              f"the referees alone: tau {ensemble['referees_alone']['kendall_tau']:.3f}")
    top = summary.get("search_top")
    if top:
        print(f"  the search's own top {top['count']}: mean rank {top['supernet_mean_rank']:.1f} of {top['of']} by the "
              f"supernet, {top['standalone_mean_rank']:.1f} standalone (much later standalone: the supernet overrated "
              "what its search picked)")
        if not math.isnan(top["spread_kendall_tau"]):
            print(f"  the other {top['of'] - top['count']} archs alone: tau {top['spread_kendall_tau']:.3f}, predicted "
                  f"latency as the score {top['spread_latency_kendall_tau']:.3f}")
    baseline = summary["latency_baseline"]
    print(f"  predicted latency as the score (slower ranks higher): tau {baseline['kendall_tau']:.3f} "
          f"rho {baseline['spearman_rho']:.3f} (a supernet below this knows less than 'bigger is better')")
    if summary["standalone_seed_tau"] is not None:
        print(f"  standalone seed against seed: tau {summary['standalone_seed_tau']:.3f} (how well one standalone "
              "training ranks the archs for another: the noise of the truth, which averages the seeds)")
    if summary["attainable_tau"] is not None:
        print(f"  a perfect ranker would reach about tau {summary['attainable_tau']:.3f} against this "
              f"{len(summary['standalone']['seeds'])}-seed mean (estimated from the seed agreement; more "
              "rank.train_seeds raise it)")
    print(f"  standalone val against standalone test: tau {summary['standalone_val_test_tau']:.3f} (the val split's "
          "own noise: how well the truth on val ranks the same models on test; more seeds do not lower it)")
    if summary["standalone"].get("truths"):
        print(f"  standalone results read from {summary['standalone']['truths']} (rank.truths: nothing trained)")
    print(f"report: {out_dir / 'rank.json'}  {out_dir / 'rank.csv'}  {out_dir / 'rank.png'}  "
          f"{out_dir / 'standalone.json'} (rank.truths=<it> ranks another search against the same archs untrained)")


@hydra_app("rank", taken_from={group: "it comes from the search run (run=...), as its .hydra/config.yaml says"
                               for group in ("data", "search_space", "latency_table", "trainer")})
def main(cfg: DictConfig) -> None:
    run_hydra_app("rank", lambda cfg, run: report(rank(cfg, run), run.out_dir,
                                                  referees_of_search=cfg.rank.referees is None), cfg)


if __name__ == "__main__":
    main()
