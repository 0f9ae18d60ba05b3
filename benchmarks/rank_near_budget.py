"""Does a supernet rank the archs near the latency budget, where a search picks its winner?

``melnas-rank`` reads a supernet's Kendall tau over archs spread across the whole space
plus the search's own top 5. A search's winner, though, is picked among archs just under
its latency target, which differ far less from each other. This script scores every arch
a ``melnas-rank`` cache holds standalone truths for (the same training recipe, every seed
present) with each search run's supernet, as ``melnas-rank`` does (batchnorm
recalibrated, the whole val split), and prints Kendall tau against the mean standalone val
accuracy: over all those archs, and over those whose predicted latency lies in
``[near x target, target]`` of the run's reward target. Beside them: how well one
standalone seed ranks the near-budget archs for another (the noise of the truth there),
and what picking the best of them by one standalone training gains over a random pick,
judged on another seed's test accuracy: the most any search could show over random
search among those archs. Last, which options the supernets (their mean score) over- or
underrate, over all the archs: for each option of a decision family (``kernel=5``,
``se=True``) the correlation of an arch's share of that option with the truth, with the
score and with the score's error.

    python benchmarks/rank_near_budget.py --cache outputs/rank_cache RUN [RUN ...] [--near 0.7] [--scores-out scores.json]
        [--refit-examples 2048]

The runs must be searches of one space and data set, the cache that of ``melnas-rank``
runs on them (``rank.cache_dir``; several rank runs' archs together make a larger set).
Needs 2 or more training seeds in the cache (``rank.train_seeds``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.search import search_run  # noqa: E402
from nas.data.dataset import open_prepared  # noqa: E402
from nas.io.registry import build_space  # noqa: E402
from nas.latency.measure import latency_table_for  # noqa: E402
from nas.search.loop import CHECKPOINT  # noqa: E402
from nas.search.rank.job import RankSettings, ScoringBatches, score_archs, scoring_batches  # noqa: E402
from nas.search.rank.report import attainable_tau  # noqa: E402
from nas.search.rank.stats import kendall_tau  # noqa: E402
from nas.search.referees import load_supernet  # noqa: E402
from nas.search.scoring import LatencyLookup  # noqa: E402
from search_spaces.base import Arch  # noqa: E402


def cached_truths(cache: Path) -> tuple[dict[str, dict], list[str]]:
    """arch hash -> {"arch": json, "val": [per seed], "test": [per seed]} for the archs every
    recipe key (one per training seed) holds; and the keys."""
    entries: dict[str, dict[str, dict]] = defaultdict(dict)
    for path in cache.glob("*-*.json"):
        arch_hash, key = path.stem.split("-", 1)
        entries[arch_hash][key] = json.loads(path.read_text())
    keys = sorted({key for by_key in entries.values() for key in by_key})
    if len(keys) < 2:
        raise SystemExit(f"{cache} holds standalone results of {len(keys)} training seed(s): run melnas-rank with "
                         "'rank.train_seeds=[0,1]' or more first, so that the truth's own noise can be read")
    truths = {h: {"arch": by_key[keys[0]]["arch"],
                  "val": [by_key[k]["val_accuracy"] for k in keys],
                  "test": [by_key[k]["test_accuracy"] for k in keys]}
              for h, by_key in entries.items() if set(by_key) == set(keys)}
    return truths, keys


def target_ms(run: Path, space, predict) -> float:
    """The run's reward target in ms (a preset's name, as experiment=quick gives, predicted)."""
    target = OmegaConf.load(run / ".hydra" / "config.yaml").reward.target_ms
    return float(predict(space.presets[target])) if isinstance(target, str) else float(target)


def best_pick_gain(val: np.ndarray, test: np.ndarray) -> float:
    """Mean test gain, over every ordered pair of seeds (a, b), of the arch with the best val
    accuracy of seed a over the mean arch, both judged on seed b's test accuracy."""
    seeds = val.shape[1]
    gains = [test[int(np.argmax(val[:, a])), b] - test[:, b].mean()
             for a in range(seeds) for b in range(seeds) if a != b]
    return float(np.mean(gains))


def zscore(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / values.std()


def option_shares(archs: Sequence[Arch]) -> dict[str, np.ndarray]:
    """"kernel=5" -> per arch, the share of its ``kernel`` decisions (a family: the decision
    names without their ``l<i>_`` layer prefix) that take the option 5. The first option of
    a two-option family is left out (its share is 1 minus the other's). Every decision
    counts, also those of a layer the arch drops: the space contract does not say which
    decisions a skip makes inert."""
    families: dict[str, list[str]] = defaultdict(list)
    for name in archs[0].names:
        families[re.sub(r"^l\d+_", "", name)].append(name)
    choices = [{name: str(value) for name, value in arch.as_dict().items()} for arch in archs]
    shares: dict[str, np.ndarray] = {}
    for family, names in families.items():
        options = sorted({c[n] for c in choices for n in names})
        for option in options[1:] if len(options) == 2 else options:
            shares[f"{family}={option}"] = np.array([np.mean([c[n] == option for n in names]) for c in choices])
    return shares


def print_decision_bias(archs: Sequence[Arch], score: np.ndarray, truth: np.ndarray) -> None:
    """Which options the supernet over- or underrates: the correlation, over the archs, of
    each option's share with the standalone truth, with the score and with the score's
    error (z-scored score minus z-scored truth; positive: archs that use the option more
    are scored higher than their truth)."""
    error = zscore(score) - zscore(truth)
    print("\noption (share of an arch's decisions) | r with truth | r with the score | r with the error")
    for option, share in option_shares(archs).items():
        if share.std() == 0:
            continue
        r = [float(np.corrcoef(share, y)[0, 1]) for y in (truth, score, error)]
        print(f"{option} | {r[0]:+.2f} | {r[1]:+.2f} | {r[2]:+.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished melnas-search run directories")
    parser.add_argument("--cache", type=Path, required=True, help="the melnas-rank cache (rank.cache_dir)")
    parser.add_argument("--near", type=float, default=0.7, help="near the budget: latency in [near x target, target]")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--refit-examples", type=int, default=0,
                        help="score with each arch's output layer refitted on that many train examples (rank.refit_examples)")
    parser.add_argument("--scores-out", type=Path, help="write every arch's truth, latency and scores per run as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    truths, keys = cached_truths(args.cache)
    hashes = sorted(truths)
    val = np.array([truths[h]["val"] for h in hashes])
    test = np.array([truths[h]["test"] for h in hashes])
    truth = val.mean(axis=1)
    first = search_run(args.runs[0])
    data = open_prepared(first.data["cache_dir"])
    space = build_space(dict(first.space_config))
    table = latency_table_for(space, num_classes=data.num_classes, input_shape=data.input_shape,
                              seed=first.settings.seed, **first.settings.latency_table.kwargs())
    predict = LatencyLookup(table.predict_arch, space)
    archs = [space.arch_from_json_dict(truths[h]["arch"]) for h in hashes]
    latency = np.array([predict(a) for a in archs])
    target = target_ms(args.runs[0], space, predict)
    near = (latency >= args.near * target) & (latency <= target)
    print(f"{len(hashes)} archs with {len(keys)} standalone seeds in {args.cache}; target {target:.4f} ms; "
          f"{near.sum()} of them within [{args.near:g} x target, target]")
    if near.sum() < 3:
        raise SystemExit("fewer than 3 archs near the budget: rank more searches' top archs into the cache, or widen --near")

    seed_tau = float(np.mean([kendall_tau(val[near, a], val[near, b])
                              for a in range(len(keys)) for b in range(a + 1, len(keys))]))
    noise = float(np.sqrt(np.mean(np.var(val[near], axis=1, ddof=1))))  # pooled over the archs
    print(f"near the budget the truth spans {truth[near].min():.4f}-{truth[near].max():.4f} (std {truth[near].std(ddof=1):.4f}; "
          f"one training seed's noise {noise:.4f}); seed against seed tau {seed_tau:.2f}, a perfect ranker "
          f"~{attainable_tau(seed_tau, len(keys)):.2f} against the {len(keys)}-seed mean")
    print(f"picking the best near-budget arch by one standalone training gains {best_pick_gain(val[near], test[near]):+.4f} "
          "test accuracy over a random pick among them (judged on another seed)")
    print(f"predicted latency as the score: tau {kendall_tau(latency, truth):.2f} over all, "
          f"{kendall_tau(latency[near], truth[near]):.2f} near the budget")

    print("\nrun | tau over all | tau near the budget")
    scores = []
    batches_by_size: dict[int, ScoringBatches] = {}  # the val split and train batches, loaded once
    for run in args.runs:
        found = search_run(run)
        if dict(found.space_config) != dict(first.space_config) or found.data["cache_dir"] != first.data["cache_dir"]:
            raise SystemExit(f"{run} searched another space or data set than {args.runs[0]}: give runs of one of each")
        supernet = load_supernet(run / CHECKPOINT, found.settings.trainer.few_shot, space, num_classes=data.num_classes,
                                 input_shape=data.input_shape, device=torch.device("cpu"))
        size = found.settings.trainer.val_batch_size
        if size not in batches_by_size:
            batches_by_size[size] = scoring_batches(data, RankSettings(refit_examples=args.refit_examples), size,
                                                     torch.device("cpu"))
        score = np.array(score_archs(supernet, archs, batches_by_size[size], ["recalibrate"])["recalibrate"])
        scores.append(score)
        print(f"{run} | {kendall_tau(score, truth):.2f} | {kendall_tau(score[near], truth[near]):.2f}", flush=True)
    mean = np.mean(scores, axis=0)
    if len(scores) > 1:
        print(f"the mean score of the {len(scores)} supernets | {kendall_tau(mean, truth):.2f} | "
              f"{kendall_tau(mean[near], truth[near]):.2f}")
    print_decision_bias(archs, mean, truth)
    if args.scores_out:
        args.scores_out.write_text(json.dumps({
            "archs": {h: {"val": truths[h]["val"], "test": truths[h]["test"], "latency_ms": float(ms), "near": bool(n)}
                      for h, ms, n in zip(hashes, latency, near)},
            "scores": {str(run): dict(zip(hashes, map(float, score))) for run, score in zip(args.runs, scores)},
        }, indent=1))


if __name__ == "__main__":
    main()
