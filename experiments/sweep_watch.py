"""A member of a sweep on submitit's local launcher stops when the sweep's own process ends.

submitit runs every local job under a controller that is meant to outlive the Python
process that submitted it, as a SLURM job outlives its ``sbatch``. On one's own machine
that means a Ctrl-C'd or killed ``melnas-search -m hydra/launcher=submitit_local ...``
leaves its members running, each holding cores, with nothing left to collect their
results. So ``@hydra_app`` records the process that launches a sweep
(``MELNAS_SWEEP_PID``, inherited through submitit's environment), and a member of a local
sweep checks every few seconds that this process is alive; once it is gone the member
interrupts itself as a Ctrl-C would: a search stops at its last checkpoint and
``resume=true`` continues it. SLURM members keep running: there the cluster, not the
submitting shell, owns them (``scancel`` stops them).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Mapping

SWEEP_PID_ENV = "MELNAS_SWEEP_PID"
EXECUTOR_ENV = "SUBMITIT_EXECUTOR"  # set by submitit in every job: "local", "slurm", ...
# Not SIGINT: a job started from a script in the background inherits SIGINT ignored, and
# Python then never turns it into KeyboardInterrupt. Not SIGUSR2 or SIGTERM: submitit's own.
STOP_SIGNAL = signal.SIGUSR1
log = logging.getLogger("melnas")


def mark_sweep_process() -> None:
    """Called where a command starts (never inside a submitit job, which runs the task
    function alone): this process is the one its sweep members watch."""
    os.environ[SWEEP_PID_ENV] = str(os.getpid())


def stop_when_sweep_ends(poll_s: float = 2.0, env: Mapping[str, str] | None = None) -> threading.Thread | None:
    """In a member of a local submitit sweep, a daemon thread that interrupts the main
    thread once the sweep's process is gone; None anywhere else."""
    env = os.environ if env is None else env
    sweep_pid = int(env.get(SWEEP_PID_ENV, "0") or 0)
    if (env.get(EXECUTOR_ENV) != "local" or sweep_pid <= 0 or sweep_pid == os.getpid()
            or threading.current_thread() is not threading.main_thread()):  # signal handlers: main thread only
        return None
    signal.signal(STOP_SIGNAL, _stop_as_on_ctrl_c)

    def watch() -> None:
        while process_alive(sweep_pid):
            time.sleep(poll_s)
        log.warning("the sweep that launched this job (process %d) has ended: stopping as on Ctrl-C", sweep_pid)
        # a real signal to the main thread, not _thread.interrupt_main(): it also ends a
        # blocking call there (a sleep, a wait on worker processes)
        signal.pthread_kill(threading.main_thread().ident, STOP_SIGNAL)

    watcher = threading.Thread(target=watch, name="melnas-sweep-watch", daemon=True)
    watcher.start()
    return watcher


def _stop_as_on_ctrl_c(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
