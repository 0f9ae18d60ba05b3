"""Progress output: a bar on a terminal, a line every 10% in a log file or pipe."""

from __future__ import annotations

import io

import pytest
from tqdm.auto import tqdm

from nas.progress import LineProgress, progress_bar
from nas.search.tracking import RunTracker


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_stream_that_is_not_a_terminal_gets_a_line_every_10_percent():
    stream = io.StringIO()
    with progress_bar(total=1000, desc="melnas-prepare", unit="file", stream=stream) as bar:
        assert isinstance(bar, LineProgress)
        for i in range(1000):
            bar.set_postfix(loss=f"{1 / (i + 1):.3f}")
            bar.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10  # a tqdm bar written to a file adds a line per redraw
    assert [line.split(": ", 1)[1].split()[0] for line in lines] == [f"{p}%" for p in range(10, 101, 10)]
    assert lines[-1].startswith("melnas-prepare: 100% (1000/1000 file, ") and lines[-1].endswith("loss=0.001")


def test_wrapping_an_iterable_counts_it_and_an_early_stop_prints_where_it_stopped():
    stream = io.StringIO()
    assert list(progress_bar(range(7), desc="d", stream=stream)) == list(range(7))
    assert len(stream.getvalue().splitlines()) == 7  # 7 items: every item crosses a 10% mark
    stream = io.StringIO()
    bar = progress_bar(total=100, desc="epoch 1 shared", stream=stream)
    for _ in range(25):
        bar.update()
    bar.close()
    bar.close()
    assert stream.getvalue().splitlines()[-1].startswith("epoch 1 shared: 25% (25/100 it")
    assert len(stream.getvalue().splitlines()) == 3  # 10%, 20%, and the stop at 25%


def test_disabled_prints_nothing_and_a_terminal_gets_tqdm(tmp_path):
    stream = io.StringIO()
    with progress_bar(total=10, desc="d", stream=stream, enabled=False) as bar:
        bar.update(10)
    assert stream.getvalue() == ""
    bar = progress_bar(total=10, desc="d", stream=Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
    tracker = RunTracker(tmp_path, progress=False)
    assert tracker.bar(10, "final").disable
    tracker.close()


def test_every_percent_is_checked():
    with pytest.raises(ValueError, match="every_percent"):
        LineProgress(total=3, every_percent=0)
