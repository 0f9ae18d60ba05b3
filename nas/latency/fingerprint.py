"""What identifies the networks of a space for its latency table: ``space_fingerprint``.

A table file is reused only while the space builds the same networks: same decisions,
same unit keys of a reference arch, and the same source code deciding the modules (the
space's classes, the project code its module imports, its units' ``nn.Module`` classes).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from nas.io.checkpoint import preserved_rng_state
from search_spaces.base import Categorical, InputShape, LayerCost, SearchSpace


def space_fingerprint(space: SearchSpace, *, num_classes: int, input_shape: InputShape) -> str:
    """A hash of what a space is, without knowing its constructor arguments.

    The decisions (names and options) plus the unit keys of a reference arch (first
    option everywhere, no skips) change whenever a config change (widths, depth,
    strides, ...) changes the networks the space builds; the source of the space's
    classes and of the modules its units are built from changes when their code does
    (a unit key a space author forgot to update would otherwise keep a stale table).
    """
    reference = space.arch(
        [d.options[0] if isinstance(d, Categorical) else () for d in space.decisions]
    )
    units = space.layers(reference, num_classes=num_classes, input_shape=input_shape)
    decisions = [
        [d.name, list(d.options)] if isinstance(d, Categorical) else [d.name, d.num_inputs]
        for d in space.decisions
    ]
    blob = json.dumps({"decisions": decisions, "reference_units": [u.key for u in units],
                       "code": code_digest(space, units)}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def code_digest(space: SearchSpace, units: Sequence[LayerCost]) -> str:
    """A hash of the source files that decide the networks a table times: those defining
    ``space``'s classes and the (non-torch) ``nn.Module`` classes of ``units``, and the
    files of the project's own code the space's module imports (a helper file of blocks
    that returns plain torch layers, say); installed packages are left out."""
    objects: set[Any] = {cls for cls in type(space).__mro__ if cls.__module__ not in ("builtins", "abc")}
    with preserved_rng_state():  # building a unit initialises its weights: leave the run's draws alone
        for unit in units:
            objects |= {type(m) for m in unit.build().modules() if not type(m).__module__.startswith("torch.")}
    objects |= set(_imported_project_code(type(space)))
    files = sorted({f for f in (_source_file(obj) for obj in objects) if f is not None})
    digest = hashlib.sha1()
    for name in files:
        digest.update(Path(name).read_bytes())
    return digest.hexdigest()[:16]


def _imported_project_code(cls: type) -> list[Any]:
    """The modules, classes and functions ``cls``'s module imports from files beside its
    package (the project it belongs to), not from installed packages."""
    module = sys.modules.get(cls.__module__)
    here = _source_file(cls)
    if module is None or here is None:
        return []
    project = Path(here).resolve().parents[1]
    found = []
    for value in vars(module).values():
        if inspect.ismodule(value) or inspect.isclass(value) or inspect.isfunction(value):
            path = _source_file(value)
            if path is not None and _within(Path(path).resolve(), project) and not _installed(Path(path)):
                found.append(value)
    return found


def _installed(path: Path) -> bool:
    """A file of an installed package (a virtual environment may sit inside the project)."""
    return bool({"site-packages", "dist-packages"} & set(path.parts))


def _within(path: Path, folder: Path) -> bool:
    return folder == path or folder in path.parents


def _source_file(obj: Any) -> str | None:
    try:
        return inspect.getsourcefile(obj)
    except (TypeError, OSError):  # a built-in, or defined where no file holds it
        return None
