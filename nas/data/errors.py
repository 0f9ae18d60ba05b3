"""Errors of the data pipeline.

``DataError`` stops a whole run (missing root, a class with no usable recording, a
manifest naming missing files, a stale cache): its message says what is wrong and what
to do. ``AudioDecodeError`` concerns one recording: ``prepare`` lists such files in
``skipped.csv`` and carries on; ``windows_from_file`` raises it to its caller.
"""

from __future__ import annotations

from enum import Enum

from nas.errors import MelnasError


class SkipKind(str, Enum):
    """Why a file was not used, as a stable word (``skipped.csv``'s ``kind`` column), so
    that skipped files can be counted by reason; the free-text reason gives the detail."""

    UNREADABLE = "unreadable"  # the file system refused it
    EMPTY = "empty"  # 0 bytes, or no samples
    UNDECODABLE = "undecodable"  # no decoder reads it
    NON_FINITE = "non_finite"  # NaN or infinite samples
    TOO_SHORT = "too_short"  # shorter than data.min_seconds
    SILENT = "silent"  # peak below data.silence_dbfs
    NOT_AUDIO = "not_audio"  # not an audio file extension
    HIDDEN = "hidden"  # name starts with '.'
    OUTSIDE_CLASS = "outside_class"  # directly in data.root, not in a class folder
    UNLISTED = "unlisted"  # an audio file that the data set's own metadata does not list
    EXCLUDED = "excluded"  # left out by a data.format option (ESC-10, an NSynth source, ...)
    UNEXPECTED = "unexpected"  # an error melnas did not foresee


class DataError(MelnasError):
    """The data set or its configuration cannot be used as given."""


class AudioDecodeError(DataError):
    """One recording cannot be turned into windows; the message is the reason and
    ``kind`` the reason's group."""

    def __init__(self, message: str, kind: SkipKind = SkipKind.UNDECODABLE) -> None:
        super().__init__(message)
        self.kind = kind
