"""The standalone results of a rank check as a file of their own (``standalone.json``),
and ``rank.truths``: a later check that reads them instead of training.

Standalone trainings are the check's whole cost (an hour or more on a laptop) and its
cache is keyed to the data cache as it is on one disk (touched or moved recordings
train afresh). ``standalone.json`` keeps what the trainings found, per arch and seed, with
what makes it valid for another search: the splits of the data (``split_identity``,
which survives copying the recordings to another machine), the space's config and each
arch's network digest. Any later search of the same space and splits can then be ranked
against the same archs in the minutes its supernet takes to score them: search options
compared on one fixed truth, on this machine or another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any, Callable, Mapping, Sequence

from nas.errors import MelnasError
from nas.io.atomic import atomic_write_json
from nas.io.model_file import to_plain
from search_spaces.base import Arch, SearchSpace

FILE_NAME = "standalone.json"
FORMAT = "melnas-rank-standalone-1"


@dataclass(frozen=True)
class Standalone:
    """One arch's standalone accuracies on val and test, per training seed."""

    val_by_seed: Mapping[int, float]
    test_by_seed: Mapping[int, float]

    @property
    def val(self) -> float:
        return mean(self.val_by_seed.values())

    @property
    def test(self) -> float:
        return mean(self.test_by_seed.values())


@dataclass(frozen=True)
class Truth:
    """A ranked arch, where it came from (``top``, ``stratified``) and its standalone result."""

    arch: Arch
    origin: str
    network: str
    standalone: Standalone


def write_truths(path: Path, truths: Sequence[Truth], *, space: SearchSpace, split_identity: str,
                 space_config: Mapping[str, Any], recipe: Mapping[str, Any], num_classes: int,
                 input_shape: Sequence[int]) -> Path:
    """``standalone.json``: every arch's standalone accuracies per seed and what they hold
    for (the classes and input shape say what each network was built for)."""
    return atomic_write_json(path, {
        "format": FORMAT, "split_identity": split_identity, "space": to_plain(dict(space_config)),
        "recipe": to_plain(dict(recipe)), "num_classes": num_classes, "input_shape": list(input_shape),
        "archs": [{"arch": t.arch.to_json_dict(), "arch_str": space.arch_string(t.arch), "origin": t.origin,
                   "network": t.network, "val_by_seed": {str(s): a for s, a in t.standalone.val_by_seed.items()},
                   "test_by_seed": {str(s): a for s, a in t.standalone.test_by_seed.items()}}
                  for t in truths],
    })


def read_truths(path: str | Path, space: SearchSpace, *, split_identity: str, space_config: Mapping[str, Any],
                network_of: Callable[[Arch], str]) -> tuple[list[Truth], dict[str, Any]]:
    """The truths of ``path`` (a ``standalone.json`` or the rank output folder holding one)
    and the recipe that trained them; a MelnasError unless they hold for this search: the
    same splits, the same space config, and every arch built into the network it was
    trained as (``network_of``: the digest of today's standalone build)."""
    file = Path(path).expanduser()
    file = file / FILE_NAME if file.is_dir() else file
    setting = f"rank.truths={path}"
    try:
        document = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MelnasError(f"{setting}: cannot read {file} ({err}): give the standalone.json of an earlier melnas-rank "
                          "run (or its output folder)") from err
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise MelnasError(f"{setting}: {file} is not a melnas-rank standalone.json (format {FORMAT})")
    if document["split_identity"] != split_identity:
        raise MelnasError(f"{setting}: its archs were trained on other splits than this search's data holds (another "
                          "data.seed, other split settings, recordings added or removed): rank against truths of "
                          "this data, or drop rank.truths to train the archs")
    if document["space"] != to_plain(dict(space_config)):
        raise MelnasError(f"{setting}: its archs come from another search space config than this search's "
                          f"({document['space']} against {to_plain(dict(space_config))}): drop rank.truths")
    truths = []
    for item in document["archs"]:
        arch = space.arch_from_json_dict(item["arch"])
        truths.append(Truth(arch, item["origin"], item["network"], Standalone(
            {int(s): float(a) for s, a in item["val_by_seed"].items()},
            {int(s): float(a) for s, a in item["test_by_seed"].items()})))
    stale = [space.arch_string(t.arch) for t in truths if t.network != network_of(t.arch)]
    if stale:
        raise MelnasError(f"{setting}: the space's code now builds {len(stale)} of its archs into other networks than "
                          f"were trained ({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}): their standalone "
                          "accuracies no longer hold; drop rank.truths to train them afresh")
    seeds = {tuple(sorted(t.standalone.val_by_seed)) for t in truths}
    if len(truths) < 2 or len(seeds) != 1:
        raise MelnasError(f"{setting}: {file} needs 2 or more archs, each with the same training seeds")
    return truths, document["recipe"]
