"""Speech Commands v1 and v2 (Warden 2018), as ``speech_commands_v0.0{1,2}.tar.gz``
unpacks: ``<word>/<speaker>_nohash_<n>.wav`` (1-s clips; 30 words in v1, 35 in v2),
``validation_list.txt`` and ``testing_list.txt`` (one ``<word>/<file>`` per line) and
``_background_noise_/*.wav``.

Splits: the official lists (everything else is train). Group: the speaker, the hash
before ``_nohash_``; the lists are drawn by that hash, so a speaker never crosses splits.

``task``:
- ``all``: every word is a class (35 in v2, 30 in v1); ``_background_noise_`` is not a
  word and is listed as ``excluded``.
- ``commands``: the 12-class task: yes, no, up, down, left, right, on, off, stop, go,
  ``unknown`` (every other word, all of its recordings) and ``silence``: the
  ``_background_noise_`` recordings, which prepare cuts into windows like any long
  recording. Each noise file is one recording, drawn into a split by ``data.seed`` with
  ``data.splits`` (so a noise type heard in test was not heard in training). This
  differs from the TensorFlow recipe (unknown and silence sampled at 10% of each split)
  and from the separately released v2 test archive, so 12-class figures are close to,
  not identical with, published ones; the 35-word task follows the official lists exactly.
"""

from __future__ import annotations

from pathlib import Path

from nas.data.errors import DataError, SkipKind
from nas.data.formats.common import find_base
from nas.data.manifest import AUDIO_EXTENSIONS, Listing, Recording, Skipped, files_under

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
NOISE = "_background_noise_"
TASKS = ("all", "commands")


def read_speech_commands(root: Path, task: str = "all") -> Listing:
    if task not in TASKS:
        raise DataError(f"data.format.task={task!r} is not one of {list(TASKS)}: 'all' "
                        "(every word) or 'commands' (10 words + unknown + silence)")
    base = find_base(root, "testing_list.txt", data_set="Speech Commands",
                     unpacked="the folder holding testing_list.txt and one folder per word")
    fixed: dict[str, str] = {}
    for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
        for line in (base / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                fixed[line.strip()] = split
    recordings: list[Recording] = []
    skipped: list[Skipped] = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        if folder.name.startswith("."):
            skipped.append(Skipped(str(folder), SkipKind.HIDDEN,
                                   "hidden folder (not searched): its name starts with '.'"))
            continue
        for path in files_under(folder, skipped):
            source = path.relative_to(base).as_posix()
            if path.suffix.lower() not in AUDIO_EXTENSIONS:
                skipped.append(Skipped(str(path), SkipKind.NOT_AUDIO,
                                       f"not an audio file extension ({path.suffix or 'none'})"))
            elif folder.name == NOISE and task == "all":
                skipped.append(Skipped(str(path), SkipKind.EXCLUDED, "background noise is "
                                       "not a word (data.format.task=commands uses it as "
                                       "silence)"))
            elif folder.name == NOISE:
                recordings.append(Recording(path, source, "silence", source))
            else:
                label = folder.name if task == "all" or folder.name in COMMANDS else "unknown"
                speaker = path.name.split("_nohash_")[0]
                recordings.append(Recording(path, source, label, speaker,
                                            split=fixed.get(source, "train")))
    missing = sorted(set(fixed) - {r.source for r in recordings})
    if missing:
        raise DataError(f"validation_list.txt / testing_list.txt in {base} name "
                        f"{len(missing)} file(s) that are not audio files of a word folder: "
                        f"{', '.join(missing[:5])}; the copy is incomplete: unpack the whole "
                        "archive again")
    return Listing(recordings, skipped)
