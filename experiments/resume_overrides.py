"""``melnas-search resume=true hydra.run.dir=<run>`` with nothing else: the run's own overrides.

A search records the overrides it was started with in ``<run>/checkpoints/started_with.yaml``
(``record_overrides``); before Hydra composes a resume, ``fill_resume_overrides`` puts back
every one of them the command line does not give itself. Hydra rewrites ``<run>/.hydra/``
at every launch, so without this a resume typed without the original overrides was
refused and left the run's saved config describing the refused call, not the run.
Overrides given on the resume command line replace the recorded ones (the resume check
then refuses any that changes the run, ``nas.search.resume.RESUME_FREE_KEYS`` aside).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import yaml

from nas.io.atomic import atomic_write_text
from nas.search.resume import CHECKPOINT

STARTED_WITH = CHECKPOINT.parent / "started_with.yaml"  # in the run directory
RESUME_TRUE = ("resume=true", "resume=True")


def override_key(override: str) -> str:
    """``trainer.epochs`` of ``trainer.epochs=3``, ``+trainer.x=1``, ``~trainer.x``; ``experiment`` of ``experiment=quick``."""
    return override.split("=", 1)[0].lstrip("+~")


def recorded_overrides(overrides: Sequence[str]) -> list[str]:
    """What a run records of its overrides: all but ``resume`` and Hydra's own settings."""
    return [o for o in overrides if override_key(o) != "resume" and not override_key(o).startswith("hydra.")]


def record_overrides(run_dir: Path, overrides: Sequence[str]) -> None:
    """Write ``started_with.yaml`` for a search starting in ``run_dir``."""
    path = run_dir / STARTED_WITH
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(recorded_overrides(overrides), default_flow_style=False))


def fill_resume_overrides(argv: list[str]) -> list[str]:
    """``argv`` (changed in place) with, on ``resume=true``, the recorded overrides of the run
    in ``hydra.run.dir`` that it does not give itself; unchanged otherwise (a sweep, a run
    without a record: one started before melnas kept it)."""
    args = argv[1:]
    if not any(a in RESUME_TRUE for a in args) or "-m" in args or "--multirun" in args:
        return argv
    run_dirs = [a.split("=", 1)[1] for a in args if override_key(a) == "hydra.run.dir"]
    if not run_dirs or not (Path(run_dirs[-1]) / STARTED_WITH).is_file():
        return argv
    recorded = yaml.safe_load((Path(run_dirs[-1]) / STARTED_WITH).read_text()) or []
    given = {override_key(a) for a in args if "=" in a or a.startswith("~")}
    argv[1:1] = [o for o in recorded if override_key(o) not in given]
    return argv
