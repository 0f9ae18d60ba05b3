"""Free Spoken Digit Dataset (Jackson et al.), as its repository unpacks:
``recordings/{digit}_{speaker}_{index}.wav`` (8 kHz; 50 takes per digit and speaker).

``split``:
- ``official``: the repository's README split: indices 0-4 are test; indices 5-9 are
  val (the README names no val set; this takes the next five) and the rest train.
  Every speaker is in every split, so it measures new takes of known voices.
- ``speaker``: speaker-independent, the honest test of new voices: each speaker is a
  group and a fold (speakers sorted by name are folds 1, 2, ...); ``data.test_fold``
  picks the test speaker (default: the last), val is another speaker, and
  cross-validation is leave-one-speaker-out.
"""

from __future__ import annotations

import re
from pathlib import Path

from nas.data.errors import DataError, SkipKind
from nas.data.formats.common import find_base
from nas.data.manifest import AUDIO_EXTENSIONS, Listing, Recording, Skipped, files_under

NAME = re.compile(r"^(\d)_([A-Za-z0-9]+)_(\d+)$")
SPLITS = ("official", "speaker")


def read_fsdd(root: Path, split: str = "official") -> Listing:
    if split not in SPLITS:
        raise DataError(f"data.format.split={split!r} is not one of {list(SPLITS)}")
    base = find_base(root, "recordings", data_set="the Free Spoken Digit Dataset",
                     unpacked="free-spoken-digit-dataset-master")
    folder = base / "recordings"
    skipped: list[Skipped] = []
    parsed = []
    for path in files_under(folder, skipped):
        match = NAME.match(path.stem)
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            skipped.append(Skipped(str(path), SkipKind.NOT_AUDIO,
                                   f"not an audio file extension ({path.suffix or 'none'})"))
        elif match is None:
            skipped.append(Skipped(str(path), SkipKind.UNLISTED, "name does not follow "
                                   "{digit}_{speaker}_{index}.wav"))
        else:
            parsed.append((path, match.group(1), match.group(2), int(match.group(3))))
    fold_of = {name: number for number, name in
               enumerate(sorted({speaker for _, _, speaker, _ in parsed}), start=1)}
    recordings = []
    for path, digit, speaker, index in parsed:
        source = f"recordings/{path.name}"
        if split == "speaker":
            recordings.append(Recording(path, source, digit, speaker, fold=fold_of[speaker]))
        else:
            fixed = "test" if index <= 4 else "val" if index <= 9 else "train"
            recordings.append(Recording(path, source, digit, source, split=fixed))
    return Listing(recordings, skipped)
