"""A member of a local submitit sweep interrupts itself once the sweep's process is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from experiments.sweep_watch import EXECUTOR_ENV, SWEEP_PID_ENV, process_alive, stop_when_sweep_ends

REPO = Path(__file__).resolve().parents[1]

MEMBER = textwrap.dedent("""
    import time
    from experiments.sweep_watch import stop_when_sweep_ends
    assert stop_when_sweep_ends(poll_s=0.05) is not None
    print("watching", flush=True)
    try:
        time.sleep(60)
        print("slept through")
    except KeyboardInterrupt:
        print("interrupted")
""")


def _member(sweep_pid: int, executor: str) -> subprocess.Popen:
    """The member as a script's background job starts it: with SIGINT ignored."""
    env = {**os.environ, "PYTHONPATH": str(REPO), SWEEP_PID_ENV: str(sweep_pid), EXECUTOR_ENV: executor}
    return subprocess.Popen([sys.executable, "-c", MEMBER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))


def test_a_local_member_stops_when_the_sweep_process_ends():
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
    assert out.strip() == "interrupted", err
    assert f"the sweep that launched this job (process {sweep.pid}) has ended" in err


def test_nothing_is_watched_outside_a_local_sweep():
    alive = os.getppid()
    assert stop_when_sweep_ends(env={SWEEP_PID_ENV: str(alive), EXECUTOR_ENV: "slurm"}) is None
    assert stop_when_sweep_ends(env={SWEEP_PID_ENV: str(alive)}) is None  # not a submitit job
    assert stop_when_sweep_ends(env={EXECUTOR_ENV: "local"}) is None  # no sweep recorded
    assert stop_when_sweep_ends(env={SWEEP_PID_ENV: str(os.getpid()), EXECUTOR_ENV: "local"}) is None  # its own


def test_process_alive():
    finished = subprocess.run([sys.executable, "-c", "pass"])
    assert finished.returncode == 0
    assert process_alive(os.getpid())
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert not process_alive(done.pid)
