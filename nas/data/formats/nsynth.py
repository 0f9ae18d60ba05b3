"""NSynth (Engel et al. 2017), as ``nsynth-{train,valid,test}.jsonwav.tar.gz`` unpack:
``nsynth-<split>/examples.json`` (keyed by ``note_str``; keys ``note, note_str,
instrument, instrument_str, pitch, velocity, sample_rate, qualities, qualities_str,
instrument_family, instrument_family_str, instrument_source, instrument_source_str``)
and ``nsynth-<split>/audio/<note_str>.wav`` (4-s notes at 16 kHz).

``data.root`` is the folder holding the ``nsynth-*`` folders (or one of them). Splits:
the archives (train, valid -> val, test). Label: ``instrument_family_str`` (11 families;
synth_lead has no valid or test notes). Group: the instrument (``instrument_str``) within
its archive; the official splits share no instrument between train and valid/test.

``instrument_source_str`` (acoustic, electronic, synthetic) is not the label: a family
sounds alike from every source, and the published family task uses all of them. The
``sources`` option keeps only some (e.g. ``[acoustic]`` for recorded instruments); the
others are listed as ``excluded``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from nas.data.errors import DataError, SkipKind
from nas.data.formats.common import require_files, unlisted_files
from nas.data.manifest import Listing, Recording, Skipped

SPLIT_OF = {"nsynth-train": "train", "nsynth-valid": "val", "nsynth-test": "test"}
SOURCES = ("acoustic", "electronic", "synthetic")
KEYS = ("instrument_str", "instrument_family_str", "instrument_source_str")


def read_nsynth(root: Path, sources: Sequence[str] | None = None) -> Listing:
    root = Path(root).expanduser()
    kept = list(SOURCES if sources is None else sources)
    unknown = sorted(set(kept) - set(SOURCES))
    if unknown or not kept:
        raise DataError(f"data.format.sources={list(kept)} is invalid: choose among "
                        f"{list(SOURCES)} (null keeps all)")
    folders = [root] if root.name in SPLIT_OF else \
        [root / name for name in SPLIT_OF if (root / name / "examples.json").is_file()]
    if not folders or not (folders[0] / "examples.json").is_file():
        raise DataError(f"data.root={root} holds no nsynth-train/, nsynth-valid/ or "
                        "nsynth-test/ folder with an examples.json: point it at the folder "
                        "the NSynth archives unpack into")
    recordings: list[Recording] = []
    skipped: list[Skipped] = []
    for folder in folders:
        meta = folder / "examples.json"
        examples = json.loads(meta.read_text(encoding="utf-8"))
        chosen = []
        for note, example in sorted(examples.items()):
            missing = [key for key in KEYS if key not in example]
            if missing:
                raise DataError(f"{meta}: note {note} lacks key(s) {missing}; is it the "
                                "original examples.json?")
            path = folder / "audio" / f"{note}.wav"
            if example["instrument_source_str"] not in kept:
                skipped.append(Skipped(str(path), SkipKind.EXCLUDED,
                                       f"source {example['instrument_source_str']} is not in "
                                       f"data.format.sources={kept}"))
                continue
            chosen.append(Recording(path, f"{folder.name}/audio/{note}.wav",
                                    example["instrument_family_str"],
                                    f"{folder.name}/{example['instrument_str']}",
                                    split=SPLIT_OF[folder.name]))
        require_files(chosen, meta)
        unlisted_files(folder / "audio", [r.path for r in chosen] +
                       [Path(s.path) for s in skipped], skipped, listed_in=meta)
        recordings += chosen
    return Listing(recordings, skipped)
