"""How a callable is timed: the one timing loop of every runtime and measurement.

``time_interleaved`` times several callables together, in windows spread over a span of
wall time; ``time_calls`` is the same loop for one callable. Models are turned into
callables by a runtime (``nas.latency.runtimes``); ``nas.latency.measure`` builds on this.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

# How the repeats become one figure. "median": the latency a user sees on a quiet
# machine. "min": the uncontended latency, for a machine shared with other jobs,
# where preemption inflates the median of anything longer than a time slice (on a
# 2-core box shared by 8 processes the median of one model drifted 2 -> 15 ms
# within a minute while its minimum stayed within 3%).
STATISTICS: dict[str, Callable[[list[float]], float]] = {"median": statistics.median, "min": min}


def check_timing(warmup: int, repeats: int, statistic: str) -> None:
    if statistic not in STATISTICS:
        raise ValueError(f"statistic={statistic!r} is not one of {sorted(STATISTICS)}")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")


def time_calls(
    run: Callable[[], Any], *, warmup: int = 10, repeats: int = 50, statistic: str = "median",
    min_time_ms: float = 0.0, timer: Callable[[], float] = time.perf_counter,
    sync: Callable[[], Any] = lambda: None,
) -> float:
    """``statistic`` of the wall times (ms) of ``run()`` after ``warmup`` untimed calls;
    at least ``repeats`` timed calls, more until they add up to ``min_time_ms``. One model
    alone (``measure_latency``; an exported file's session); see ``time_interleaved``."""
    return time_interleaved([run], warmup=warmup, repeats=repeats, statistic=statistic, min_time_ms=min_time_ms,
                            timer=timer, sync=sync)[0]


WINDOW_CALLS = 10
WINDOW_MS = 1.0


def time_interleaved(
    runs: Sequence[Callable[[], Any]], *, warmup: int = 10, repeats: int = 50, statistic: str = "median",
    min_time_ms: float = 0.0, min_span_ms: float = 0.0, window_calls: int = WINDOW_CALLS,
    window_ms: float = WINDOW_MS, timer: Callable[[], float] = time.perf_counter, sync: Callable[[], Any] = lambda: None,
) -> list[float]:
    """Per run, the ``statistic`` of its call times (ms), the runs timed interleaved: round
    after round, each run gets a window of timed calls (the round's first run rotating).
    Every run is timed at least ``repeats`` times and for at least ``min_time_ms`` in all,
    and every run keeps getting windows until ``min_span_ms`` of wall time has passed since
    the first (then each run only makes up what it lacks).

    A window is ``window_calls`` calls, or fewer (at least 2) for a run whose warm-up calls
    took longer than ``window_ms`` per window: what counts is how many windows each run
    gets within the span (30 eager models of 1.5 ms, 10 calls each, get at most 22 windows
    in 10 s; 2 calls each, 111).

    The one timing loop of every runtime. Why windows spread over a span: a shared VM runs
    in fast and slow phases that slow everything on it alike (on the 2-core dev VM 42% of
    10-call windows ran 1.5x slower, a pure Python loop as much as ONNX Runtime; slow phases
    lasted up to 4 s). A model timed in one contiguous block of 50 ms, or in 3 such blocks,
    can see only slow phases; windows spread over several seconds see the fast ones too, for
    every run. Two independent timings of 40 random archs in ONNX Runtime agreed within 5% for
    all 40 when spread over 8 s; over 4.6 s for 52% once (a slow phase covered most of one
    timing); in 3 blocks of 50 ms each, for 28%. The span is wall time, the same for 1 run
    or 500, so a table times what it needs in one batch.
    """
    check_timing(warmup, repeats, statistic)
    if window_calls < 1 or min_span_ms < 0:
        raise ValueError(f"need window_calls >= 1 and min_span_ms >= 0, got {window_calls}, {min_span_ms}")
    if not runs:
        return []
    window = [window_calls] * len(runs)
    for i, run in enumerate(runs):
        began = timer()
        for _ in range(warmup):
            run()
        sync()
        if warmup:
            per_call_ms = 1000.0 * (timer() - began) / warmup
            fitting = int(window_ms / per_call_ms) if per_call_ms > 0 else window_calls
            window[i] = max(min(2, window_calls), min(window_calls, fitting))
    times: list[list[float]] = [[] for _ in runs]
    timed_ms = [0.0] * len(runs)

    def lacks_time(i: int) -> bool:
        return timed_ms[i] < min_time_ms

    def needs_more(i: int) -> bool:
        return len(times[i]) < repeats or lacks_time(i)

    start = timer()
    n, turn = len(runs), 0
    while True:
        spanned = 1000.0 * (timer() - start) >= min_span_ms
        due = [i for i in ((turn + j) % n for j in range(n)) if not spanned or needs_more(i)]
        if not due:
            break
        for i in due:
            # past the span, a run that only lacks repeats makes up no more calls than it lacks
            short = spanned and not lacks_time(i)
            calls = min(window[i], repeats - len(times[i])) if short else window[i]
            for _ in range(calls):
                began = timer()
                runs[i]()
                sync()
                took = timer() - began
                times[i].append(took)
                timed_ms[i] += 1000.0 * took
        turn += 1
    return [1000.0 * STATISTICS[statistic](t) for t in times]
