"""The process pool shared by ``prepare`` and ``synth``."""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.pool import Pool

from threadpoolctl import threadpool_limits


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_pool(workers: int, preload: str) -> Pool:
    """A pool of ``workers`` single-threaded processes.

    Where the platform has a fork server, it imports the main script and the module
    ``preload`` (the one defining the task function) once; workers fork from it in
    milliseconds without inheriting the caller's threads (torch, tqdm, TensorBoard) the
    way a plain fork would. Elsewhere: spawn.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["__main__", preload])
    else:
        context = multiprocessing.get_context("spawn")
    return context.Pool(workers, initializer=_one_thread)


def _one_thread() -> None:
    """One BLAS thread per worker: the pool already uses every core."""
    threadpool_limits(1)


def one_blas_thread() -> threadpool_limits:
    """Context manager for work done in the calling process: small matrix products are
    slower with several BLAS threads, many times slower on a busy machine."""
    return threadpool_limits(1)
