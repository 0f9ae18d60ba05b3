"""Which folders hold runs melnas-compare can read, whether they used one data set, and
what to call each in a table.

A **train dir** holds ``metrics.json`` (melnas-train / -eval / -adapt); a **search dir**
``top_archs.json`` or ``search_log.jsonl``. Folders given on the command line are
searched below for them (a run dir is not searched further).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from nas.io.run_config import run_cache_dir

SKIP_DIRS = {".hydra", "tensorboard", "checkpoints"}
LOGGER = logging.getLogger(__name__)
_NO_OUTPUTS = "holds no run outputs (metrics.json, top_archs.json or search_log.jsonl)"


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories at or below ``paths`` (a train or search dir is not searched further).

    A given folder without run outputs (typically the run folder of a command that
    failed, caught by a glob such as ``outputs/train/<date>/*``) is skipped with a
    warning naming it; only when no folder holds a run is that an error."""
    found: list[Path] = []
    empty: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise ValueError(f"{path} is not a directory: pass run directories (or folders holding them)")
        runs = list(_walk(path))
        if not runs:
            empty.append(path)
        found += [r for r in runs if r not in found]
    if not found:
        raise ValueError(f"{', '.join(map(str, empty))}: {_NO_OUTPUTS}")
    for path in empty:
        LOGGER.warning("skipped %s: %s (a run that failed or has not finished?)", path, _NO_OUTPUTS)
    return found


def _walk(path: Path) -> Iterable[Path]:
    if is_train_dir(path) or is_search_dir(path):
        yield path
        return
    for child in sorted(p for p in path.iterdir() if p.is_dir() and p.name not in SKIP_DIRS):
        yield from _walk(child)


def is_train_dir(path: Path) -> bool:
    return (path / "metrics.json").is_file()


def is_search_dir(path: Path) -> bool:
    return (path / "top_archs.json").is_file() or (path / "search_log.jsonl").is_file()


def run_data(run: Path) -> Path | None:
    """The data cache a run trained or searched on (resolved from where melnas-compare runs)."""
    if is_train_dir(run):
        cache_dir = json.loads((run / "metrics.json").read_text()).get("cache_dir")
        return Path(cache_dir).expanduser().resolve() if cache_dir else None
    cache_dir = run_cache_dir(run)
    return cache_dir.resolve() if cache_dir else None


def warn_on_mixed_data(runs: Sequence[Path]) -> None:
    """Rows of different data sets cannot be compared: say so when the runs differ (each
    data set then gets a Pareto front of its own, ``nas.evaluate.compare.mark_pareto``)."""
    by_data: dict[Path, list[Path]] = {}
    for run in runs:
        data = run_data(run)
        if data is not None:
            by_data.setdefault(data, []).append(run)
    if len(by_data) > 1:
        LOGGER.warning("these runs used %d different data caches, and accuracies on different data are not "
                       "comparable (each gets its own Pareto front): %s", len(by_data),
                       "; ".join(f"{data}: {len(found)} run(s), e.g. {found[0]}" for data, found in by_data.items()))


def run_labels(runs: Sequence[Path]) -> dict[Path, str]:
    """Each run's path below the runs' common parent; a member of a Hydra sweep (``-m``)
    adds the overrides its sweep varied, ``0 (reward.target_ms=0.08)``."""
    resolved = [r.resolve() for r in runs]
    sweeps = {r.parent: _varied_in_sweep(r.parent) for r in resolved if (r.parent / "multirun.yaml").is_file()}

    def swept(run: Path) -> str:
        varied = sweeps.get(run.parent, {}).get(run.name)
        return f" ({', '.join(varied)})" if varied else ""

    if len(resolved) == 1:
        return {runs[0]: resolved[0].name + swept(resolved[0])}
    parent = Path(*_common_parts([r.parts for r in resolved]))
    return {run: (str(r.relative_to(parent)) or r.name) + swept(r) for run, r in zip(runs, resolved)}


def _varied_in_sweep(sweep_dir: Path) -> dict[str, list[str]]:
    """Per member of the Hydra sweep in ``sweep_dir``, its overrides (``.hydra/overrides.yaml``)
    that not every member shares."""
    members = {m.name: [str(o) for o in (yaml.safe_load((m / ".hydra" / "overrides.yaml").read_text()) or [])]
               for m in sweep_dir.iterdir() if (m / ".hydra" / "overrides.yaml").is_file()}
    shared = set.intersection(*map(set, members.values())) if members else set()
    return {name: [o for o in overrides if o not in shared] for name, overrides in members.items()}


def _common_parts(parts: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    common: list[str] = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return tuple(common)
