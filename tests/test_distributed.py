"""Distributed runs (nas/distributed.py): data shards, thread shares, Hydra on worker
ranks (fast); 2-process gloo searches under torchrun on tiny generated audio (slow)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.cli import hydra_worker_overrides
from nas.data.dataset import make_loader, open_prepared
from nas.distributed import ShardSampler, World, world_from_env
from nas.io.checkpoint import load_checkpoint
from nas.runtime import available_cores, resolve_threads
from nas.search.loop import CHECKPOINT
from tests.test_search import read_log, tiny_overrides, write_tiny_audio

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("length, size", [(10, 2), (11, 2), (13, 3), (2, 4)])
def test_shards_cover_every_position_once_per_epoch(length: int, size: int) -> None:
    for seed in (0, 1):
        shards = [list(ShardSampler(length, World(rank, size), seed=seed)) for rank in range(size)]
        assert sorted(sum(shards, [])) == list(range(length))
        assert [len(s) for s in shards] == [len(ShardSampler(length, World(r, size), seed=seed)) for r in range(size)]
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    epochs = [list(ShardSampler(40, World(0, 2), seed=seed)) for seed in (0, 1)]
    assert epochs[0] != epochs[1], "each epoch's seed gives another order"


def test_a_reused_sampler_draws_a_new_order_each_pass_and_drop_last_evens_the_shards() -> None:
    sampler = ShardSampler(40, World(0, 2), seed=3)
    first, second = list(sampler), list(sampler)
    assert first == list(ShardSampler(40, World(0, 2), seed=3)), "the first pass is the seed's permutation"
    assert first != second and sorted(first + list(ShardSampler(40, World(1, 2), seed=3))) == list(range(40))
    # 21 items, 2 ranks, per-rank batch 5: one process would take 21 // 10 = 2 steps, so
    # each rank keeps 10 positions (rank 0 has 11 and would otherwise run a third step).
    shards = [ShardSampler(21, World(rank, 2), seed=0, per_rank=10) for rank in range(2)]
    assert [len(s) for s in shards] == [10, 10] and [len(list(s)) for s in shards] == [10, 10]


def test_sharded_loader_reads_every_train_window_once(tmp_path: Path) -> None:
    from nas.data.prepare import prepare_dataset

    write_tiny_audio(tmp_path / "audio")
    data = {**_data_config(tmp_path)}
    prepare_dataset(data, progress=False)
    prepared = open_prepared(tmp_path / "cache")
    n = len(prepared.rows("train"))
    seen = []
    for rank in range(2):
        loader = make_loader(prepared, "train", batch_size=3, shuffle=True, seed=7, shard=World(rank, 2))
        seen += [x for x, _ in loader]
    whole = torch.cat([x for x, _ in make_loader(prepared, "train", batch_size=3, shuffle=False)])
    got = torch.cat(seen)
    assert len(got) == n
    as_rows = sorted(map(tuple, got.reshape(n, -1)[:, :8].tolist()))
    assert as_rows == sorted(map(tuple, whole.reshape(n, -1)[:, :8].tolist()))


def _data_config(root: Path) -> dict:
    return {"root": str(root / "audio"), "cache_dir": str(root / "cache"), "sample_rate": 8000,
            "window_seconds": 0.5, "n_mels": 16, "splits": {"train": 0.5, "val": 0.25, "test": 0.25}}


def test_one_process_is_not_distributed() -> None:
    world = world_from_env({})
    assert world == World() and world.is_writer and not world.distributed
    assert world.mine([1, 2, 3]) == [1, 2, 3]
    assert World(1, 2).mine([0, 1, 2, 3, 4]) == [1, 3]


def test_jobs_launched_together_share_the_cores() -> None:
    cores = available_cores()
    assert resolve_threads(None, {}) is None  # alone: torch's default, as before
    assert resolve_threads(3, {"MELNAS_THREADS": "2", "LOCAL_WORLD_SIZE": "2"}) == 3
    assert resolve_threads(None, {"MELNAS_THREADS": "2", "LOCAL_WORLD_SIZE": "2"}) == 2
    assert resolve_threads(None, {"LOCAL_WORLD_SIZE": "2"}) == max(1, cores // 2)
    assert resolve_threads(None, {"MELNAS_PARALLEL_JOBS": str(4 * cores)}) == 1
    with pytest.raises(ValueError, match="MELNAS_THREADS"):
        resolve_threads(None, {"MELNAS_THREADS": "0"})


def test_worker_ranks_keep_hydra_out_of_the_run_dir() -> None:
    argv = ["melnas-search", "hydra.run.dir=runs/a", "seed=1"]
    assert hydra_worker_overrides(list(argv), {"RANK": "0"}) == argv
    worker = hydra_worker_overrides(list(argv), {"RANK": "1"})
    assert "hydra.run.dir=runs/a" not in worker and "seed=1" in worker
    assert "hydra.output_subdir=null" in worker and "hydra/job_logging=disabled" in worker


# ---- 2-process searches (slow) ------------------------------------------------------------


def run_search(workdir: Path, run_dir: Path, processes: int, *extra: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=<processes> melnas-search ...`` (a plain
    process for 1), as ``python -m torch.distributed.run`` so that no reinstall is needed."""
    launch = [sys.executable]
    if processes > 1:
        launch += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [*launch, "-m", "experiments.search", *tiny_overrides(workdir, *extra), f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def ddp_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    write_tiny_audio(root / "audio")
    return root


@pytest.fixture(scope="module")
def two_process_run(ddp_workdir: Path) -> Path:
    run_search(ddp_workdir, ddp_workdir / "two", 2)
    return ddp_workdir / "two"


def files_of(run_dir: Path) -> list[str]:
    """Relative paths, TensorBoard event files by folder (their names hold host and pid)."""
    return sorted(str(p.parent.relative_to(run_dir)) + "/<events>" if p.name.startswith("events.")
                  else str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())


@pytest.mark.slow
def test_two_processes_write_what_one_process_writes(ddp_workdir: Path, two_process_run: Path) -> None:
    one = ddp_workdir / "one"
    run_search(ddp_workdir, one, 1)
    assert files_of(two_process_run) == files_of(one)
    assert len(list((two_process_run / "tensorboard").glob("events.*"))) == 1, "rank 0 alone writes TensorBoard"
    # Each scored arch once (rank 1's scores reach the log through rank 0), in the same phases.
    assert [(r["phase"], r["epoch"]) for r in read_log(two_process_run)] == \
        [(r["phase"], r["epoch"]) for r in read_log(one)]
    best = json.loads((two_process_run / "best_arch.json").read_text())
    assert best["hash"] in {r["hash"] for r in read_log(two_process_run) if r["phase"] == "final"}
    assert not list(ddp_workdir.glob("outputs")), "no rank wrote a Hydra run dir of its own"
    state = load_checkpoint(two_process_run / CHECKPOINT)["state"]
    assert state["epoch"] == 2 and state["train_step"] == load_checkpoint(one / CHECKPOINT)["state"]["train_step"]


@pytest.mark.slow
def test_two_process_run_stopped_in_its_second_epoch_resumes_to_the_same_end(
    ddp_workdir: Path, two_process_run: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "stopped"
    out = run_search(ddp_workdir, run_dir, 2, "trainer.stop_after_epochs=1")
    assert "stopped after epoch 1" in out.stdout
    assert not (run_dir / "best_arch.json").exists()
    other_world = tmp_path / "resumed_alone"
    shutil.copytree(run_dir, other_world)
    run_search(ddp_workdir, run_dir, 2, "resume=true")
    # Same phases, archs, accuracies and predicted latencies as the uninterrupted run, each
    # scored arch logged once, in the same order (the final candidates are ranked by reward,
    # so a latency that differed between runs or ranks could reorder tied accuracies).
    def scored(run: Path) -> list[tuple]:
        return [(r["phase"], r["epoch"], r["hash"], r["accuracy"], r["latency_ms"]) for r in read_log(run)]

    assert scored(run_dir) == scored(two_process_run)
    assert load_checkpoint(run_dir / CHECKPOINT)["state"]["train_step"] == \
        load_checkpoint(two_process_run / CHECKPOINT)["state"]["train_step"]
    # A checkpoint of 2 processes resumed by 1: finishes (its batches are whole, not halves).
    run_search(ddp_workdir, other_world, 1, "resume=true")
    assert load_checkpoint(other_world / CHECKPOINT)["state"]["epoch"] == 2
    assert (other_world / "best_arch.json").is_file()
    assert np.isfinite(json.loads((other_world / "best_arch.json").read_text())["reward"])


@pytest.mark.slow
def test_two_processes_train_a_referee_search_together_then_the_search(ddp_workdir: Path, tmp_path: Path) -> None:
    """Under torchrun every rank takes part in the referee search (its own process group,
    ended before the search starts its own); rank 0 alone writes it."""
    refs = tmp_path / "refs"
    run_search(ddp_workdir, tmp_path / "run", 2, "trainer.final.referee_searches=1", f"trainer.final.referee_dir={refs}")
    (referee,) = [p for p in refs.iterdir() if p.is_dir()]
    assert (referee / "top_archs.json").is_file()
    summary = json.loads((tmp_path / "run" / "search_summary.json").read_text())
    assert summary["final_referees"] == [str(referee)]


@pytest.mark.slow
def test_two_processes_training_an_arch_each_finish(ddp_workdir: Path, two_process_run: Path) -> None:
    run_dir = ddp_workdir / "per_rank"
    run_search(ddp_workdir, run_dir, 2, "trainer.ddp_archs=per_rank")
    state = load_checkpoint(run_dir / CHECKPOINT)["state"]
    assert state["train_step"] == load_checkpoint(two_process_run / CHECKPOINT)["state"]["train_step"]
    assert np.isfinite(json.loads((run_dir / "best_arch.json").read_text())["reward"])
    assert [(r["phase"], r["epoch"]) for r in read_log(run_dir)] == [(r["phase"], r["epoch"]) for r in read_log(two_process_run)]


def test_joblib_sweeps_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from experiments.cli import share_cores_in_sweeps

    monkeypatch.setenv("MELNAS_PARALLEL_JOBS", "")  # so that teardown removes what the test sets
    monkeypatch.delenv("MELNAS_PARALLEL_JOBS")
    share_cores_in_sweeps("RunMode.RUN", 4)
    assert "MELNAS_PARALLEL_JOBS" not in os.environ
    share_cores_in_sweeps("RunMode.MULTIRUN", 4)
    assert os.environ["MELNAS_PARALLEL_JOBS"] == "4"


def test_submitit_sweeps_take_the_cpus_per_task(monkeypatch: pytest.MonkeyPatch) -> None:
    from experiments.cli import share_cores_in_sweeps
    from nas.runtime import resolve_threads

    for name in ("MELNAS_THREADS", "MELNAS_PARALLEL_JOBS"):
        monkeypatch.setenv(name, "")  # so that teardown removes what the test sets
        monkeypatch.delenv(name)
    share_cores_in_sweeps("RunMode.MULTIRUN", None, None)  # submitit_local's default: no count given
    assert "MELNAS_THREADS" not in os.environ
    share_cores_in_sweeps("RunMode.MULTIRUN", None, 1)
    assert os.environ["MELNAS_THREADS"] == "1" and resolve_threads() == 1


@pytest.mark.slow
def test_sweep_with_the_submitit_local_launcher(ddp_workdir: Path, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="hydra-submitit-launcher is not installed (pip install '.[cluster]'; make install does)")
    sweep = tmp_path / "sweep"
    latency = tmp_path / "latency"  # a fresh table: both jobs start without one
    command = [sys.executable, "-m", "experiments.search", "-m", "hydra/launcher=submitit_local",
               *tiny_overrides(ddp_workdir, "trainer.epochs=1"), f"latency_table.cache_dir={latency}",
               "seed=0,1", f"hydra.sweep.dir={sweep}", "hydra.launcher.timeout_min=10"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for job in ("0", "1"):
        assert (sweep / job / "best_arch.json").is_file() and (sweep / job / CHECKPOINT).is_file()
        assert (sweep / job / ".hydra" / "config.yaml").is_file()
    tables = list(latency.glob("*.json"))
    assert len(tables) == 1, tables
    # Built once: one calibration, on the archs of the seed of the job that built it.
    calibration = json.loads(tables[0].read_text())["calibration"]
    assert len(calibration["arch_hashes"]) == 2
    # melnas-compare reads the multirun dir directly: both members are found below it.
    from nas.evaluate.run_dirs import find_run_dirs

    assert sorted(p.name for p in find_run_dirs([sweep])) == ["0", "1"]


# ---- 2-process retraining (slow) ----------------------------------------------------------


@pytest.mark.slow
def test_two_process_retraining_writes_once_and_scores_the_whole_test_split(tmp_path: Path) -> None:
    from tests.test_train_fixtures import TINY_SPACE, prepare_tiny

    cache = prepare_tiny(tmp_path)
    run_dir = tmp_path / "train"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "experiments.train", "arch=plain_sep3x3", *TINY_SPACE, f"data.cache_dir={cache}",
               "train=quick", "train.epochs=3", "train.batch_size=16", "train.eval_batch_size=32",
               "latency_measure.warmup=1", "latency_measure.repeats=3", "device=cpu", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("metrics: ") == 1, "rank 0 alone reports"
    assert files_of(run_dir) == sorted([
        ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "confusion_matrix.png", "history.csv",
        "metrics.json", "model.pt", "per_class.csv", "tensorboard/<events>", "train.log"])
    assert len(list((run_dir / "tensorboard").glob("events.*"))) == 1, "rank 0 alone writes TensorBoard"
    assert not list(tmp_path.glob("outputs")), "no rank wrote a Hydra run dir of its own"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    prepared = open_prepared(cache)
    assert sum(row["support"] for row in metrics["per_class"]) == len(prepared.rows("test"))
    assert metrics["training"]["processes"] == 2
    history = (run_dir / "history.csv").read_text().splitlines()
    assert len(history) == 1 + metrics["training"]["epochs_run"]
    n_val = len(prepared.rows("val"))
    for row in csv.DictReader(history):  # accuracies of the whole val split: k / n_val
        assert abs(float(row["val_accuracy"]) * n_val - round(float(row["val_accuracy"]) * n_val)) < 1e-6


def _average_partial_gradients(rank: int, init_file: str, out: str) -> None:
    """Rank 0 has gradients for weights a and b, rank 1 for b only; c is used by neither."""
    import torch.distributed as dist

    from nas.distributed import average_gradients

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        a, b, c = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
        if rank == 0:
            a.grad = torch.full((3,), 4.0)
        b.grad = torch.full((3,), float(rank + 1))
        average_gradients([a, b, c], World(rank, 2))
        torch.save({"a": a.grad, "b": b.grad, "c_is_none": c.grad is None}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_ranks_that_trained_different_archs_average_every_used_weight(tmp_path: Path) -> None:
    """trainer.ddp_archs=per_rank: a weight one rank did not use counts as a zero gradient there."""
    import torch.multiprocessing as mp

    out = str(tmp_path / "grads")
    mp.spawn(_average_partial_gradients, args=(str(tmp_path / "init"), out), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(f"{out}.{rank}", weights_only=True)
        assert torch.equal(got["a"], torch.full((3,), 2.0)), "(4 + 0) / 2 on every rank"
        assert torch.equal(got["b"], torch.full((3,), 1.5)), "(1 + 2) / 2"
        assert got["c_is_none"], "a weight no rank used gets no gradient (no weight decay step)"
