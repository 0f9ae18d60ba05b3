"""The one wrapper every console command runs in.

A user error (``nas.errors.MelnasError`` and its subclasses ``DataError`` and
``CheckpointError``, any ``ValueError`` from validation, a missing file) prints one line,
``melnas-<app>: <error>``, on stderr and exits with status 2 (a ``ValueError`` from outside
melnas's own packages, e.g. a search space's code, also says where it was raised). With ``MELNAS_DEBUG=1`` in
the environment the traceback is printed before that line. Anything else is a bug and
propagates with its traceback.

Hydra apps call ``run_hydra_app`` inside their ``@hydra_app`` function
(``experiments/hydra_app.py``: ``@hydra.main`` with Hydra's config errors as one line): it
reads the run directory and the config-group choices from Hydra (the only place that
does) and passes them to the app's plain function as a ``HydraRun``.

Under torchrun, ``hydra_worker_overrides`` keeps every rank but 0 from writing into the
run directory (Hydra's ``.hydra/`` and log file); nas/distributed.py sends those ranks
rank 0's run directory.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from omegaconf import DictConfig

from experiments.sweep_watch import stop_when_sweep_ends
from nas.errors import MelnasError
from nas.io.registry import available_spaces, unmatched_experiment_space_files
from nas.runtime import PARALLEL_JOBS_ENV, THREADS_ENV, available_cores

T = TypeVar("T")
USER_ERRORS: tuple[type[BaseException], ...] = (MelnasError, ValueError, FileNotFoundError)
DEBUG_ENV = "MELNAS_DEBUG"
log = logging.getLogger("melnas")


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run_cli(app: str, work: Callable[[], T], *, after_interrupt: Callable[[], str | None] | None = None) -> T:
    """``work()``; a user error becomes ``melnas-<app>: <error>`` on stderr and exit status 2.
    On Ctrl-C, ``after_interrupt()`` (when given and not None) is said after "interrupted":
    how to continue the run."""
    try:
        return work()
    except USER_ERRORS as error:
        if debug_enabled():
            traceback.print_exc()
        message = str(error) if not isinstance(error, FileNotFoundError) or not error.filename \
            else f"{error.strerror or 'no such file'}: {error.filename}"
        print(f"melnas-{app}: {message}{_origin_outside_engine(error)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        hint = after_interrupt() if after_interrupt is not None else None
        print(f"melnas-{app}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        sys.exit(130)


# melnas's own packages, where a ValueError is one of its checks; search_spaces/ is not among
# them: spaces of your own live there.
ENGINE_DIRS = tuple(str(Path(__file__).resolve().parents[1] / name) + os.sep
                    for name in ("nas", "experiments", "controllers", "child_models"))


def _origin_outside_engine(error: BaseException) -> str:
    """Where an error came from when melnas's own checks did not raise it (e.g. a
    ValueError inside a search space of your own): its file and line, so that a one-line
    message such as ``max() arg is an empty sequence`` can be found; "" otherwise."""
    if not isinstance(error, ValueError) or isinstance(error, MelnasError) or error.__traceback__ is None:
        return ""
    frame = error.__traceback__
    while frame.tb_next is not None:
        frame = frame.tb_next
    path = str(Path(frame.tb_frame.f_code.co_filename).resolve())
    if path.startswith(ENGINE_DIRS):
        return ""
    return f" (raised at {path}:{frame.tb_lineno}; {DEBUG_ENV}=1 prints the traceback)"


@dataclass(frozen=True)
class HydraRun:
    """What a Hydra app needs from Hydra's runtime: where to write, which option of each
    config group was chosen (``controller`` -> ``enas_lstm``) and the overrides given."""

    out_dir: Path
    choices: Mapping[str, Any] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()  # the command line's (or a composed step's) task overrides

    @classmethod
    def composed(cls, cfg: DictConfig, out_dir: str | Path) -> HydraRun:
        """For a config composed with ``return_hydra_config=True`` (the demo, tests) run in ``out_dir``."""
        return cls(Path(out_dir), dict(cfg.hydra.runtime.choices), tuple(cfg.hydra.overrides.task))


def hydra_worker_overrides(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> list[str]:
    """``argv`` (``sys.argv`` when None, changed in place) with, on a torchrun rank other
    than 0, Hydra told to write nothing: no ``.hydra/`` subdir, no log file, and a run
    dir of its own under the system's temporary folder (Hydra creates it; it stays empty).
    A ``-m`` sweep is left alone (torchrun runs one job)."""
    argv = sys.argv if argv is None else argv
    env = os.environ if env is None else env
    if env.get("RANK", "0") == "0" or "-m" in argv or "--multirun" in argv:
        return argv
    import tempfile

    scratch = Path(tempfile.gettempdir()) / f"melnas-rank{env['RANK']}-{os.getpid()}"
    argv[:] = [a for a in argv if not a.startswith(("hydra.run.dir=", "hydra.output_subdir=", "hydra/job_logging="))]
    argv += [f"hydra.run.dir={scratch}", "hydra.output_subdir=null", "hydra/job_logging=disabled"]
    return argv


def share_cores_in_sweeps(mode: str, n_jobs: int | None, cpus_per_task: int | None = None) -> None:
    """In a sweep, tell ``nas.runtime.resolve_threads`` (unless already set) how many cores a
    job has: a launcher running ``n_jobs`` jobs at once on this host (joblib) splits them
    (``MELNAS_PARALLEL_JOBS``); one giving each job ``cpus_per_task`` (submitit's local and
    SLURM launchers) sets that many threads (``MELNAS_THREADS``)."""
    if "MULTIRUN" not in mode:
        return
    if n_jobs:
        jobs = available_cores() if int(n_jobs) < 0 else int(n_jobs)
        os.environ.setdefault(PARALLEL_JOBS_ENV, str(jobs))
    if cpus_per_task:
        os.environ.setdefault(THREADS_ENV, str(int(cpus_per_task)))


def warn_unmatched_experiment_space_files(experiment: str | None) -> None:
    """A ``<experiment>_<space>.yaml`` whose space does not exist is never applied: say so."""
    for path in unmatched_experiment_space_files(experiment):
        log.warning("%s is never used: no search space is named %r (known: %s); experiment=%s applies "
                    "%s_<space>.yaml to search_space=<space>", path, path.stem[len(experiment) + 1:],
                    ", ".join(available_spaces()), experiment, experiment)


def run_hydra_app(app: str, work: Callable[[DictConfig, HydraRun], Any], cfg: DictConfig, *,
                  after_interrupt: Callable[[HydraRun], str | None] | None = None) -> Any:
    """Inside ``@hydra_app``: ``work(cfg, run)`` under ``run_cli``; ``after_interrupt(run)``
    says how to continue an interrupted run."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    share_cores_in_sweeps(str(hydra_cfg.mode), hydra_cfg.launcher.get("n_jobs"), hydra_cfg.launcher.get("cpus_per_task"))
    stop_when_sweep_ends()
    runtime = hydra_cfg.runtime
    run = HydraRun(Path(runtime.output_dir), dict(runtime.choices), tuple(hydra_cfg.overrides.task))
    warn_unmatched_experiment_space_files(run.choices.get("experiment"))
    hint = (lambda: after_interrupt(run)) if after_interrupt is not None else None
    return run_cli(app, lambda: work(cfg, run), after_interrupt=hint)
