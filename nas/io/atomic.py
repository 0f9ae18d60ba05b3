"""The one atomic write: a reader sees the previous complete file or the new one, never a part.

Each writer fills a temporary file in the target's directory, flushes it to disk
(``fsync``) and renames it over the target (``os.replace`` is atomic on POSIX and
Windows). On any error the temporary file is removed and the target left as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


def _mode_for_new_files() -> int:
    """0666 less the process umask: the mode ``open()`` gives a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_MODE_FOR_NEW_FILES = _mode_for_new_files()


class AtomicFile:
    """A temporary file beside ``path``; ``commit`` flushes, fsyncs and renames it over
    ``path``, ``discard`` removes it. For writers that stream (and may seek) before
    they know whether the file is complete; ``atomic_open`` is the usual way in."""

    def __init__(self, path: str | Path, mode: str = "wb", **open_kwargs: Any) -> None:
        if mode not in ("w", "wb"):
            raise ValueError(f"an atomic file is written whole: mode must be 'w' or 'wb', got {mode!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.chmod(self.temporary, _MODE_FOR_NEW_FILES)  # mkstemp makes 0600; give what open() would
        self.handle: IO = os.fdopen(fd, mode, **open_kwargs)

    def commit(self) -> Path:
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.replace(self.temporary, self.path)
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self) -> None:
        self.handle.close()
        Path(self.temporary).unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """Write ``path`` through a temporary file, committed on a clean exit of the block
    and discarded on an error (``mode``: ``"w"`` or ``"wb"``)."""
    file = AtomicFile(path, mode, **open_kwargs)
    try:
        yield file.handle
    except BaseException:
        file.discard()
        raise
    file.commit()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    with atomic_open(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 2, trailing_newline: bool = True,
                      **dumps_kwargs: Any) -> Path:
    """``json.dumps(data, indent=indent, **dumps_kwargs)`` (plus a newline) written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent, **dumps_kwargs) + ("\n" if trailing_newline else ""))
