"""Errors of the data pipeline.

``DataError`` stops a whole run (missing root, a class with no usable recording, a
manifest naming missing files, a stale cache): its message says what is wrong and what
to do. ``AudioDecodeError`` concerns one recording: ``prepare`` lists such files in
``skipped.csv`` and carries on; ``windows_from_file`` raises it to its caller.
"""


class DataError(ValueError):
    """The data set or its configuration cannot be used as given."""


class AudioDecodeError(DataError):
    """One recording cannot be turned into windows; the message is the reason."""
