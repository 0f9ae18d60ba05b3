"""A member of a local submitit sweep interrupts itself once the sweep's process is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from experiments.sweep_watch import (EXECUTOR_ENV, SWEEP_PROCESS_ENV, process_alive, process_identity,
                                     stop_when_sweep_ends)

REPO = Path(__file__).resolve().parents[1]

MEMBER = textwrap.dedent("""
    import time
    from concurrent.futures import ProcessPoolExecutor
    from experiments.sweep_watch import stop_when_sweep_ends
    assert stop_when_sweep_ends(poll_s=0.05) is not None
    try:
        with ProcessPoolExecutor(2) as pool:  # as melnas-rank's and melnas-study's jobs
            work = [pool.submit(time.sleep, 60) for _ in range(2)]
            print("watching", flush=True)
            for done in work:
                done.result()
        print("slept through")
    except KeyboardInterrupt:
        print("interrupted")
""")


def _member(sweep_pid: int, executor: str) -> subprocess.Popen:
    """The member as a script's background job starts it: with SIGINT ignored."""
    env = {**os.environ, "PYTHONPATH": str(REPO), SWEEP_PROCESS_ENV: process_identity(sweep_pid),
           EXECUTOR_ENV: executor}
    return subprocess.Popen([sys.executable, "-c", MEMBER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))


def test_a_local_member_and_its_workers_stop_when_the_sweep_process_ends():
    sweep = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    member = _member(sweep.pid, "local")
    try:
        assert member.stdout.readline().strip() == "watching"
        time.sleep(0.3)
        assert member.poll() is None  # the sweep is alive: the member runs on
        sweep.kill()
        sweep.wait()
        out, err = member.communicate(timeout=20)
    finally:
        sweep.kill()
        member.kill()
    assert out.strip() == "interrupted", err  # within the timeout: the 60 s sleeps in the workers were cut
    assert f"the sweep that launched this job (process {sweep.pid}) has ended" in err


def test_nothing_is_watched_outside_a_local_sweep():
    alive = process_identity(os.getppid())
    assert stop_when_sweep_ends(env={SWEEP_PROCESS_ENV: alive, EXECUTOR_ENV: "slurm"}) is None
    assert stop_when_sweep_ends(env={SWEEP_PROCESS_ENV: alive}) is None  # not a submitit job
    assert stop_when_sweep_ends(env={EXECUTOR_ENV: "local"}) is None  # no sweep recorded
    assert stop_when_sweep_ends(env={SWEEP_PROCESS_ENV: process_identity(os.getpid()), EXECUTOR_ENV: "local"}) is None


def test_a_finished_process_is_not_alive_before_it_is_reaped():
    assert process_alive(process_identity(os.getpid()))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    identity = process_identity(child.pid)
    assert process_alive(identity)
    child.kill()
    time.sleep(0.5)  # dead but not reaped: a zombie, which os.kill(pid, 0) still finds
    if Path(f"/proc/{child.pid}/stat").exists():
        assert not process_alive(identity)
    child.wait()
    assert not process_alive(identity)
