"""Progress bars that suit where the output goes.

On a terminal a tqdm bar redraws one line in place. Written to a file or a pipe (a
Hydra log, ``make demo > log``, a cluster job's output) every redraw becomes a line of
its own and a short run leaves megabytes of them, so there ``progress_bar`` returns a
``LineProgress`` instead: one plain line each time another ``every_percent`` of the
total is done. Both have tqdm's ``update`` / ``set_postfix`` / ``close`` and work as a
context manager and (given an iterable) as an iterator.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, TextIO

from tqdm.auto import tqdm


class LineProgress:
    """tqdm's interface, printing ``desc: 30% (3/10 file, 1.2s) postfix`` every ``every_percent``."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        stream: TextIO | None = None,
        every_percent: int = 10,
        disable: bool = False,
    ) -> None:
        if not 0 < every_percent <= 100:
            raise ValueError(f"every_percent must be in (0, 100], got {every_percent}")
        self.iterable = iterable
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream
        self.every_percent = every_percent
        self.disable = disable
        self.n = 0
        self.postfix = ""
        self._reported_step = 0  # completed every_percent steps already printed
        self._reported_n = 0
        self._started = time.perf_counter()

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LineProgress was made without an iterable")
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable or not self.total:
            return
        step = min(self.n, self.total) * 100 // (self.total * self.every_percent)
        if step > self._reported_step:
            self._reported_step = step
            self._write()

    def close(self) -> None:
        """Print the count reached when it was not the last line printed (no total, or an early stop)."""
        if not self.disable and self.n != self._reported_n:
            self._write()
        self.disable = True

    def _write(self) -> None:
        self._reported_n = self.n
        done = f"{100 * self.n // self.total}% ({self.n}/{self.total}" if self.total else f"({self.n}"
        line = f"{self.desc}: {done} {self.unit}, {time.perf_counter() - self._started:.1f}s)"
        stream = self.stream if self.stream is not None else sys.stderr
        print(f"{line} {self.postfix}".rstrip(), file=stream, flush=True)


ProgressBar = tqdm | LineProgress


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    leave: bool = True,
    stream: TextIO | None = None,
    every_percent: int = 10,
) -> ProgressBar:
    """A tqdm bar when ``stream`` (default stderr) is a terminal, else a ``LineProgress``.

    ``leave=False`` (a bar that disappears when done) applies to the terminal only: a
    line written to a log stays.
    """
    stream = stream if stream is not None else sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, leave=leave,
                    file=stream, dynamic_ncols=True)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, stream=stream,
                        every_percent=every_percent, disable=not enabled)
