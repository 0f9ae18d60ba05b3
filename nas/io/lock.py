"""One exclusive lock file, for jobs started together that would otherwise build the same
file twice (a sweep's searches preparing one data cache, a torchrun's ranks measuring
one latency table): the first holds the lock while it builds, the others wait and then
find the file complete."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX); elsewhere atomic replacement alone guards the file."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; a lost update only means building twice
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
