"""What the readers of standard data sets share: finding the archive's folder, reading
its metadata, and accounting for every audio file on disk."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

from nas.data.errors import DataError, SkipKind
from nas.data.manifest import AUDIO_EXTENSIONS, Recording, Skipped, files_under


def find_base(root: Path, marker: str, *, data_set: str, unpacked: str,
              candidates: Sequence[str] = (".",)) -> Path:
    """The folder under ``root`` that holds ``marker`` (a file or folder of the archive):
    ``root/<candidate>`` for each candidate, then one folder further down (the archive
    unpacked into a folder of its own). Raises ``DataError`` naming what was expected."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root={root} does not exist: point it at the {data_set} "
                        f"folder as the archive unpacks ({unpacked})")
    for candidate in candidates:
        for base in [root / candidate, *sorted(p / candidate for p in root.iterdir()
                                                if p.is_dir() and not p.name.startswith("."))]:
            if (base / marker).exists():
                return base.resolve()
    tried = ", ".join(f"{c}/{marker}" if c != "." else marker for c in candidates)
    raise DataError(f"data.root={root} does not look like {data_set}: no {tried} in it or "
                    f"in a folder directly below; point data.root at the folder the archive "
                    f"unpacks to ({unpacked})")


def read_csv(path: Path, columns: Iterable[str]) -> list[dict[str, str]]:
    """Rows of a metadata CSV that must have ``columns``."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = sorted(set(columns) - set(header))
        if missing:
            raise DataError(f"{path} lacks column(s) {missing}: its header is {header}; is it "
                            "the data set's original metadata file?")
        return [{key.strip(): (value or "").strip() for key, value in row.items() if key}
                for row in reader]


def require_files(recordings: Sequence[Recording], listed_in: Path) -> None:
    """Raise when metadata names audio files that are not on disk (an incomplete copy)."""
    missing = [r.source for r in recordings if not r.path.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{listed_in} names {len(missing)} file(s) that do not exist: {shown}; "
                        "the copy is incomplete: unpack the whole archive again")


def unlisted_files(folder: Path, listed: Iterable[Path], skipped: list[Skipped], *,
                   listed_in: Path) -> None:
    """Add every file under ``folder`` that the metadata does not list to ``skipped``:
    audio as ``unlisted``, anything else as ``not_audio`` (hidden ones as ``hidden``)."""
    known = {Path(path).resolve() for path in listed}
    for path in files_under(folder, skipped):
        if path.resolve() in known:
            continue
        if path.suffix.lower() in AUDIO_EXTENSIONS:
            skipped.append(Skipped(str(path), SkipKind.UNLISTED,
                                   f"not listed in {listed_in.name}"))
        else:
            skipped.append(Skipped(str(path), SkipKind.NOT_AUDIO,
                                   f"not an audio file extension ({path.suffix or 'none'})"))
