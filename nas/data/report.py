"""``PrepareReport``: what a prepare run produced, its printed summary and the loud warning
when many files were skipped (grouped by kind, each with the setting to change)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from nas.data import cache
from nas.data.card import card_lines
from nas.data.errors import SkipKind
from nas.data.features import FeatureParams
from nas.data.splits import SPLITS

SHOWN_SKIPS = 10  # skipped files the summary names, with their reasons
LOUD_SKIP_FRACTION = 0.1  # more skipped files than this share: the summary warns, per kind
# What a group of skipped files is, and what to do about it ("N of M files (P%) <this>").
SKIP_ADVICE: dict[SkipKind, str] = {
    SkipKind.TOO_SHORT: "are shorter than data.min_seconds={p.min_seconds}: lower it (a clip "
                        "from there up to data.window_seconds={p.window_seconds} is padded to "
                        "one window)",
    SkipKind.SILENT: "are silent (peak below data.silence_dbfs={p.silence_dbfs}): check them, "
                     "or lower data.silence_dbfs (null keeps silent files)",
    SkipKind.EMPTY: "are empty (no audio samples): re-export or remove them",
    SkipKind.UNDECODABLE: "cannot be decoded: convert them to wav or flac, or install ffmpeg "
                          "for more formats",
    SkipKind.NON_FINITE: "hold NaN or infinite samples: re-export them",
    SkipKind.UNREADABLE: "cannot be read: check their permissions",
    SkipKind.NOT_AUDIO: "do not have an audio file extension: rename them if they are "
                        "recordings, else keep them out of data.root",
    SkipKind.HIDDEN: "are hidden (their names start with '.'): rename them if they are "
                     "recordings",
    SkipKind.OUTSIDE_CLASS: "are not inside a class folder: move them into data.root/<class>/",
    SkipKind.UNLISTED: "are not listed in the data set's metadata: they are not part of it "
                       "(check the copy if you expected them)",
    SkipKind.EXCLUDED: "are left out by a data.format option (the reason names it)",
    SkipKind.UNEXPECTED: "failed with an unexpected error: the reasons are in skipped.csv",
}


@dataclass
class PrepareReport:
    """What a prepare run produced (or found already there, ``reused=True``)."""

    cache_dir: Path
    reused: bool
    class_names: list[str]
    recordings: dict[str, dict[str, int]]  # class -> split -> recordings
    windows: dict[str, dict[str, int]]  # class -> split -> windows
    minutes: float
    skipped: int
    features: FeatureParams
    files: int  # every file looked at: used or skipped
    skipped_kinds: dict[str, int]  # SkipKind value -> files
    clip_seconds: tuple[float, float, float]  # used recordings' length: 10th, 50th, 90th pct
    padded: int  # used recordings shorter than one window
    card: dict[str, Any] = field(default_factory=dict)  # nas.data.card.build_card
    seconds: float = 0.0
    input_shape: tuple[int, int, int] = (1, 0, 0)
    why: str = ""  # why it was (re)built
    unchecked: str = ""  # why the inputs were not compared with the cache

    def totals(self, table: dict[str, dict[str, int]]) -> dict[str, int]:
        return {split: sum(row.get(split, 0) for row in table.values()) for split in SPLITS}

    @property
    def problems(self) -> int:
        """Skipped files other than those a ``data.format`` option left out."""
        return self.skipped - self.skipped_kinds.get(SkipKind.EXCLUDED.value, 0)

    def summary(self) -> str:
        """The data card as a table (recordings, windows, groups, minutes per class and
        split; clip lengths), what was skipped, and warnings."""
        if self.unchecked:
            action = f"used as it is: {self.unchecked}"
        elif self.reused:
            action = "reused: inputs and parameters unchanged (data.rebuild=true forces a rebuild)"
        else:
            action = f"built in {self.seconds:.1f} s ({self.why})"
        low, median, high = self.clip_seconds
        recordings = sum(self.totals(self.recordings).values())
        lines = [f"cache {self.cache_dir}: {action}",
                 f"{len(self.class_names)} classes, "
                 f"{recordings} recordings, "
                 f"{self.minutes:.1f} minutes of audio, input shape {self.input_shape}",
                 f"clip lengths: median {median:.2f} s (10-90%: {low:.2f}-{high:.2f} s); "
                 f"{self.padded} of {recordings} shorter than data.window_seconds="
                 f"{self.features.window_seconds}, centred and padded with zeros to one window",
                 *card_lines(self.card)]
        excluded = self.skipped - self.problems
        kinds = ", ".join(f"{kind} {count}" for kind, count in
                          sorted(self.skipped_kinds.items(), key=lambda item: (-item[1], item[0])))
        lines.append(f"skipped files: {self.skipped} of {self.files}" + (f" ({kinds})" if kinds else "")
                     + (f", {excluded} of them left out by data.format options" if excluded
                        else "") + f"; each file and its reason: {self.cache_dir / cache.SKIPPED}")
        lines += self.skipped_examples()
        lines.append(f"examples: {self.cache_dir / cache.EXAMPLES}; data card: "
                     f"{self.cache_dir / cache.CARD_MD}")
        warning = self.skip_warning()
        return "\n".join(lines + ([warning] if warning else []))

    def skipped_examples(self) -> list[str]:
        """The first ``SHOWN_SKIPS`` problem files with their reasons, one line each (files a
        ``data.format`` option left out, and hidden files, are only in ``skipped.csv``)."""
        rows = [row for row in cache.read_skipped(self.cache_dir)
                if row["kind"] not in (SkipKind.EXCLUDED.value, SkipKind.HIDDEN.value)]
        lines = [f"  {row['path']}: {row['reason']}" for row in rows[:SHOWN_SKIPS]]
        if len(rows) > SHOWN_SKIPS:
            lines.append(f"  ... and {len(rows) - SHOWN_SKIPS} more in {self.cache_dir / cache.SKIPPED}")
        return lines

    def skip_warning(self) -> str:
        """Empty unless more than ``LOUD_SKIP_FRACTION`` of the files were skipped; then a
        warning with one line per kind of reason, largest first, naming what to change."""
        if self.problems <= LOUD_SKIP_FRACTION * self.files:
            return ""
        lines = [f"WARNING: {self.problems:,} of {self.files:,} files "
                 f"({self.problems / self.files:.0%}) were skipped:"]
        problems = {kind: count for kind, count in self.skipped_kinds.items()
                    if kind != SkipKind.EXCLUDED.value}
        lines += [f"WARNING:   {line}" for line in
                  skip_lines(problems, self.files, self.features)]
        lines.append(f"WARNING: each file and its reason: {self.cache_dir / cache.SKIPPED}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"recordings": self.recordings, "windows": self.windows,
                "minutes": self.minutes, "skipped": self.skipped, "files": self.files,
                "skipped_kinds": self.skipped_kinds, "clip_seconds": list(self.clip_seconds),
                "padded": self.padded}


def skip_lines(kinds: Mapping[str, int], files: int, params: FeatureParams) -> list[str]:
    """One line per kind of skip, largest first: how many files, and what to change."""
    return [f"{count:,} of {files:,} files ({count / files:.0%}) "
            f"{SKIP_ADVICE[SkipKind(kind)].format(p=params)}"
            for kind, count in sorted(kinds.items(), key=lambda item: -item[1])]
