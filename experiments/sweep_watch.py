"""A member of a sweep on submitit's local launcher stops when the sweep's own process ends.

submitit runs every local job under a controller that is meant to outlive the Python
process that submitted it, as a SLURM job outlives its ``sbatch``. A Ctrl-C in the
sweep's terminal reaches the members (they share its process group), but when the
launching command is killed, or ends because one member failed, the others run on,
holding cores, with nothing left to collect their results. So ``@hydra_app`` records the
process that launches a sweep (``MELNAS_SWEEP_PROCESS``: its pid and start time,
inherited through submitit's environment), and a member of a local sweep checks every few
seconds that this very process still runs; once it is gone the member stops as on Ctrl-C
(a search at its last checkpoint; ``resume=true`` continues it), its worker processes
(``study.jobs``, ``rank.jobs``) with it. SLURM members keep running: there the cluster,
not the submitting shell, owns them (``scancel`` stops them).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Mapping

SWEEP_PROCESS_ENV = "MELNAS_SWEEP_PROCESS"
EXECUTOR_ENV = "SUBMITIT_EXECUTOR"  # set by submitit in every job: "local", "slurm", ...
# Not SIGINT: a job started from a script's background job inherits SIGINT ignored, and
# Python then never turns it into KeyboardInterrupt. Not SIGUSR2 or SIGTERM: submitit's.
STOP_SIGNAL = signal.SIGUSR1
WORKERS_GRACE_S = 1.0  # the main thread's KeyboardInterrupt comes first, then the workers stop
log = logging.getLogger("melnas")


def mark_sweep_process() -> None:
    """Called where a command starts (never inside a submitit job, which runs the task
    function alone): this process is the one its sweep members watch."""
    os.environ[SWEEP_PROCESS_ENV] = process_identity(os.getpid())


def process_identity(pid: int) -> str:
    """``<pid>:<start time>``: a pid the system reuses, or a killed process its parent has
    not reaped yet (a zombie), no longer matches. The start time is read from Linux's
    /proc; elsewhere the identity is the pid alone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return str(pid)
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (command) "
    state, start_time = fields[0], fields[19]
    return f"{pid}:zombie" if state in ("Z", "X") else f"{pid}:{start_time}"


def process_alive(identity: str) -> bool:
    pid = int(identity.split(":")[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        pass
    return ":" not in identity or process_identity(pid) == identity


def stop_when_sweep_ends(poll_s: float = 2.0, env: Mapping[str, str] | None = None) -> threading.Thread | None:
    """In a member of a local submitit sweep, a daemon thread that stops the member once
    the sweep's process is gone; None anywhere else."""
    env = os.environ if env is None else env
    sweep = env.get(SWEEP_PROCESS_ENV, "")
    if (env.get(EXECUTOR_ENV) != "local" or not sweep or sweep.split(":")[0] == str(os.getpid())
            or threading.current_thread() is not threading.main_thread()  # signal handlers: main thread only
            or signal.getsignal(STOP_SIGNAL) not in (signal.SIG_DFL, None)):  # taken (SUBMITIT_PREEMPT_SIGNAL)
        return None
    signal.signal(STOP_SIGNAL, _stop_as_on_ctrl_c)

    def watch() -> None:
        while process_alive(sweep):
            time.sleep(poll_s)
        log.warning("the sweep that launched this job (process %s) has ended: stopping as on Ctrl-C",
                    sweep.split(":")[0])
        # a real signal to the main thread, not _thread.interrupt_main(): it also ends a
        # blocking call there (a sleep, a wait on worker processes)
        signal.pthread_kill(threading.main_thread().ident, STOP_SIGNAL)
        time.sleep(WORKERS_GRACE_S)
        for worker in multiprocessing.active_children():  # a process pool's workers
            worker.terminate()

    watcher = threading.Thread(target=watch, name="melnas-sweep-watch", daemon=True)
    watcher.start()
    return watcher


def _stop_as_on_ctrl_c(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
