"""Which recordings make the data set: a folder with one sub-folder per class, or a
CSV manifest ``path,label[,group][,split][,fold]``. The standard data sets' readers
(``nas.data.formats``) give the same ``Listing``.

Both give a ``Listing``: the recordings to decode, plus files that are already known to
be unusable with their reason (not audio by extension, outside any class folder, hidden
like ``.DS_Store`` or macOS ``._take.wav`` resource forks), so nothing is dropped
without a trace. Hidden folders are listed once and not searched.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from nas.data.errors import DataError, SkipKind
from nas.data.splits import SPLITS

AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
    ".au", ".snd", ".caf", ".w64", ".rf64", ".m4a", ".mp4", ".aac", ".wma", ".webm",
})


@dataclass(frozen=True)
class Recording:
    """One source recording. ``source`` names it in the index (root- or manifest-relative
    path); recordings sharing a ``group`` always land in the same split; ``split`` is a
    fixed split (a manifest's column, a data set's official list), or None; ``fold`` is
    the data set's fold number (ESC-50, UrbanSound8K), or None."""

    path: Path
    source: str
    label: str
    group: str
    split: str | None = None
    fold: int | None = None


@dataclass(frozen=True)
class Skipped:
    """A file that was not used: ``kind`` groups it, ``reason`` says what was wrong."""

    path: str
    kind: SkipKind
    reason: str


@dataclass
class Listing:
    recordings: list[Recording]
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        return sorted({recording.label for recording in self.recordings})


def scan_folder(root: str | Path) -> Listing:
    """List ``root/<class>/**/<file>``; every class folder must hold an audio file."""
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(
            f"data.root={root} {what}: point data.root at a folder with one sub-folder "
            "per class (or set data.manifest to a CSV with path,label columns)"
        )
    recordings: list[Recording] = []
    skipped: list[Skipped] = []
    empty_classes: list[str] = []
    class_dirs = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            skipped.append(_hidden(entry))
        elif entry.is_dir():
            class_dirs.append(entry)
        else:
            skipped.append(Skipped(str(entry), SkipKind.OUTSIDE_CLASS, "not inside a class folder"))
    if not class_dirs:
        raise DataError(
            f"data.root={root} has no class sub-folders: put each class's recordings in "
            f"its own folder, e.g. {root}/guitar/take1.wav"
        )
    for class_dir in class_dirs:
        found = 0
        for path in files_under(class_dir, skipped):
            if path.suffix.lower() in AUDIO_EXTENSIONS:
                source = path.relative_to(root).as_posix()
                recordings.append(Recording(path, source, class_dir.name, source))
                found += 1
            else:
                skipped.append(Skipped(str(path), SkipKind.NOT_AUDIO, f"not an audio file "
                                       f"extension ({path.suffix or 'none'})"))
        if not found:
            empty_classes.append(class_dir.name)
    if empty_classes:
        raise DataError(
            f"class folder(s) {empty_classes} under data.root={root} hold no audio files: "
            "add recordings to them or remove the folders"
        )
    return Listing(recordings, skipped)


def files_under(folder: Path, skipped: list[Skipped]) -> list[Path]:
    """Files under ``folder``, recursively, sorted; hidden entries go to ``skipped``."""
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            skipped.append(_hidden(entry))
        elif entry.is_dir():
            found.extend(files_under(entry, skipped))
        elif entry.is_file():
            found.append(entry)
    return found


def _hidden(entry: Path) -> Skipped:
    what = "hidden folder (not searched)" if entry.is_dir() else "hidden file"
    return Skipped(str(entry), SkipKind.HIDDEN, f"{what}: its name starts with '.'")


def read_manifest(manifest: str | Path) -> Listing:
    """Read ``path,label[,group][,split][,fold]`` (header row required; relative paths
    are resolved against the manifest's folder). A row has a split or a fold (a whole
    number; ``data.test_fold`` and ``data.val_fold`` choose among them), not both."""
    manifest = Path(manifest).expanduser()
    if not manifest.is_file():
        raise DataError(f"data.manifest={manifest} does not exist: give a CSV file with a "
                        "header row path,label[,group][,split][,fold]")
    base = manifest.resolve().parent
    with manifest.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in (reader.fieldnames or [])]
        missing_columns = {"path", "label"} - set(columns)
        if missing_columns:
            raise DataError(f"manifest {manifest} lacks column(s) {sorted(missing_columns)}: "
                            f"its header is {columns}; expected "
                            "path,label[,group][,split][,fold]")
        rows = [{key.strip(): (value or "").strip() for key, value in row.items() if key}
                for row in reader]
    if not rows:
        raise DataError(f"manifest {manifest} lists no recordings")
    recordings, missing, seen = [], [], set()
    for line, row in enumerate(rows, start=2):
        if not row["path"] or not row["label"]:
            raise DataError(f"manifest {manifest} line {line}: empty path or label")
        split = row.get("split") or None
        if split is not None and split not in SPLITS:
            raise DataError(f"manifest {manifest} line {line}: split {split!r} is not one "
                            f"of {list(SPLITS)} (or empty for a seeded split)")
        fold = parse_fold(row.get("fold") or "", f"manifest {manifest} line {line}")
        if fold is not None and split is not None:
            raise DataError(f"manifest {manifest} line {line}: give a split or a fold, not "
                            "both (data.test_fold and data.val_fold turn folds into splits)")
        path = Path(row["path"]).expanduser()
        path = path if path.is_absolute() else base / path
        if row["path"] in seen:
            raise DataError(f"manifest {manifest} line {line}: {row['path']} is listed twice")
        seen.add(row["path"])
        if not path.is_file():
            missing.append(row["path"])
            continue
        group = row.get("group") or row["path"]
        recordings.append(Recording(path, row["path"], row["label"], group, split, fold))
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise DataError(
            f"manifest {manifest} names {len(missing)} file(s) that do not exist "
            f"(relative paths are resolved against {base}): {shown}; fix the paths or "
            "remove those rows"
        )
    return Listing(recordings)


def parse_fold(text: str, where: str) -> int | None:
    """A fold number from a metadata cell (empty: None)."""
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{where}: fold {text!r} is not a whole number") from None
