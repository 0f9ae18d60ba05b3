"""``melnas-rank``'s outputs: ``rank.csv`` (one row per arch), ``rank.json`` (the figures)
and ``rank.png`` (supernet score against standalone accuracy)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from scipy import stats

from nas.io.atomic import atomic_open, atomic_write_json
from nas.search.rank.stats import kendall_tau, rank_of_top1, spearman_rho, top_k_overlap


def agreement(predicted: Sequence[float], actual: Sequence[float]) -> dict[str, float | int]:
    """The four figures of one (supernet score, standalone accuracy) pairing."""
    return {
        "kendall_tau": kendall_tau(predicted, actual),
        "spearman_rho": spearman_rho(predicted, actual),
        "top1_standalone_rank": rank_of_top1(predicted, actual),
        "top5_overlap": top_k_overlap(predicted, actual, 5),
    }


def search_top_placement(origins: Sequence[str], predicted: Sequence[float], actual: Sequence[float],
                         latency: Sequence[float]) -> dict[str, float | int] | None:
    """Where the search's own top archs (origin ``top``) stand among all the ranked archs:
    their mean rank (1 = best, ties averaged) by the supernet's score and standalone; and
    the Kendall tau over the spread archs alone, of the supernet's score and of predicted
    latency. The search picked its top archs because its supernet scored them highest: a
    much later standalone rank says the supernet overrated them (its bias, or a winner's
    curse), while the spread archs' taus say how it orders archs it did not pick, against
    "bigger is better". A standalone mean of few seeds pulls extreme ranks to the middle,
    so read small rank gaps as noise. None without top archs."""
    top = [i for i, origin in enumerate(origins) if origin == "top"]
    if not top:
        return None
    picked = set(top)
    spread = [i for i in range(len(origins)) if i not in picked]
    by_score, by_standalone = stats.rankdata([-p for p in predicted]), stats.rankdata([-a for a in actual])

    def spread_tau(score: Sequence[float]) -> float:
        return kendall_tau([score[i] for i in spread], [actual[i] for i in spread]) if len(spread) >= 2 else math.nan

    return {"count": len(top), "of": len(origins),
            "supernet_mean_rank": float(sum(by_score[i] for i in top) / len(top)),
            "standalone_mean_rank": float(sum(by_standalone[i] for i in top) / len(top)),
            "spread_kendall_tau": spread_tau(predicted), "spread_latency_kendall_tau": spread_tau(latency)}


def seed_agreement(accuracies_by_seed: Sequence[Sequence[float]]) -> float | None:
    """The noise of the check's truth: the mean Kendall tau between the standalone accuracies
    of every two training seeds (``None`` with one seed), i.e. how well one standalone
    training ranks the archs for another. Not a bound on the supernet's tau: the truth is the
    mean over the seeds, which a score can follow better than one seed follows another."""
    pairs = [(a, b) for i, a in enumerate(accuracies_by_seed) for b in accuracies_by_seed[i + 1:]]
    return sum(kendall_tau(a, b) for a, b in pairs) / len(pairs) if pairs else None


def attainable_tau(seed_tau: float | None, num_seeds: int) -> float | None:
    """The Kendall tau a perfect ranker would be expected to reach against the mean of
    ``num_seeds`` standalone trainings, estimated from their seed agreement ``seed_tau``.

    The truth is noisy: one training seed ranks the archs for another only at ``seed_tau``,
    so no score, however good, can be shown to rank much better than the truth's noise
    allows. Under the usual measurement model (each seed's accuracy = the arch's expected
    accuracy + independent noise of equal spread, jointly normal):
    one seed's reliability is ``r1 = sin(pi * seed_tau / 2)`` (Greiner's relation between
    Kendall's tau and Pearson's r), the mean of k seeds has ``R = k r1 / (1 + (k - 1) r1)``
    (Spearman-Brown), and the expected accuracy itself correlates with that mean at
    ``sqrt(R)``, i.e. a tau of ``2/pi * asin(sqrt(R))``. ``None`` with one seed (no agreement
    to estimate from); 0 when the seeds do not agree at all."""
    if seed_tau is None or math.isnan(seed_tau):
        return None
    r1 = max(0.0, math.sin(math.pi * seed_tau / 2))
    reliability = num_seeds * r1 / (1 + (num_seeds - 1) * r1)
    return 2 / math.pi * math.asin(math.sqrt(reliability))


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_json(summary: Mapping[str, Any], path: Path) -> Path:
    """``rank.json``; an undefined correlation (NaN: constant scores) is written as null."""
    return atomic_write_json(path, _no_nan(dict(summary)))


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def write_plot(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], path: Path) -> Path:
    """Scatter of the headline supernet score (x) against standalone val accuracy (y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_key = f"supernet_{summary['bn_mode']}"
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for origin in sorted({r["origin"] for r in rows}, reverse=True):  # stratified, then top
        points = [r for r in rows if r["origin"] == origin]
        ax.scatter([r[x_key] for r in points], [r["standalone_val"] for r in points],
                   marker="*" if origin == "top" else "o", s=80 if origin == "top" else 30,
                   label=f"{origin} ({len(points)})")
    ax.set_xlabel(f"supernet val accuracy (bn {summary['bn_mode']})")
    standalone = summary["standalone"]
    seeds = len(standalone["seeds"])
    ax.set_ylabel(f"standalone val accuracy ({standalone['recipe']['epochs']} epochs, "
                  f"{'mean of ' if seeds > 1 else ''}{seeds} seed{'s' if seeds > 1 else ''})")
    title = (f"Kendall tau {summary['kendall_tau']:.2f}, Spearman rho {summary['spearman_rho']:.2f}; "
             f"latency alone: tau {summary['latency_baseline']['kendall_tau']:.2f}")
    if summary.get("attainable_tau") is not None:
        title += (f"\nseed against seed: tau {summary['standalone_seed_tau']:.2f}; "
                  f"a perfect ranker: about {summary['attainable_tau']:.2f}")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
    return path
