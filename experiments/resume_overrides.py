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
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import OverrideParseException

from nas.io.atomic import atomic_write_text
from nas.search.resume import CHECKPOINT

STARTED_WITH = CHECKPOINT.parent / "started_with.yaml"  # in the run directory
# Settings of one call, not of the run: a resume does not repeat them (stop_after_epochs
# counts epochs from the call's start: repeated, every resume would stop after it again).
PER_CALL_KEYS = ("resume", "trainer.stop_after_epochs")


def _parsed(args: Sequence[str]) -> list[Override]:
    return OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])


def recorded_overrides(overrides: Sequence[str]) -> list[str]:
    """What a run records of its overrides: all but Hydra's own and those that belong to one
    call (``PER_CALL_KEYS``). Settings a resume may change but need not (threads, device)
    are kept: a resume runs as the run did unless told otherwise, so it computes the same."""
    return [text for text, parsed in zip(overrides, _parsed(overrides))
            if parsed.key_or_group not in PER_CALL_KEYS and not parsed.key_or_group.startswith("hydra.")]


def record_overrides(run_dir: Path, overrides: Sequence[str]) -> None:
    """Write ``started_with.yaml`` for a search starting in ``run_dir``."""
    path = run_dir / STARTED_WITH
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(recorded_overrides(overrides), default_flow_style=False))


def fill_resume_overrides(argv: list[str]) -> list[str]:
    """``argv`` (changed in place) with, on ``resume=true``, the recorded overrides of the run
    in ``hydra.run.dir`` that it does not give itself; unchanged otherwise (a sweep, a run
    without a record: one started before melnas kept it, an override Hydra will refuse)."""
    args = argv[1:]
    if "-m" in args or "--multirun" in args:
        return argv
    try:
        given = {o.key_or_group: o for o in _parsed(args)}
    except OverrideParseException:
        return argv  # Hydra says what is wrong with it
    resume, run_dir = given.get("resume"), given.get("hydra.run.dir")
    if resume is None or str(resume.value()).lower() != "true" or run_dir is None:
        return argv
    record = Path(str(run_dir.value())) / STARTED_WITH
    if not record.is_file():
        return argv
    recorded = yaml.safe_load(record.read_text()) or []
    argv[1:1] = [text for text, parsed in zip(recorded, _parsed(recorded)) if parsed.key_or_group not in given]
    return argv
