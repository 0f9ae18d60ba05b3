"""The CUDA path: a tiny search, a tiny train and latency timing on the GPU.

Skipped where torch sees no CUDA device; every other test asks for the CPU explicitly,
so the suite means the same on machines with and without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from nas.evaluate.metrics import cost_metrics
from nas.io.model_file import load_model
from nas.latency.measure import LatencySettings, measure_latency
from tests.test_train_fixtures import train_model
from tests.test_search import TINY_ENAS, search, workdir  # noqa: F401 (fixture)
from tests.test_train_fixtures import compose_train, tiny_cache  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: torch.cuda.is_available() is False here"
)


def test_tiny_search_runs_on_cuda(workdir: Path, tmp_path: Path) -> None:  # noqa: F811
    torch.cuda.reset_peak_memory_stats()
    outcome = search(
        workdir, tmp_path / "cuda", "trainer.epochs=1", "trainer.controller_steps=1", "trainer.archs_per_step=2",
        "trainer.final.num_samples=2", "trainer.final.top_k=2", space=TINY_ENAS, device="cuda",
    )
    assert outcome.finished and outcome.best is not None
    assert torch.cuda.max_memory_allocated() > 0  # the supernet really ran on the GPU


def test_tiny_train_runs_on_cuda_and_saves_a_portable_model(tiny_cache: Path, tmp_path: Path) -> None:  # noqa: F811
    torch.cuda.reset_peak_memory_stats()
    result = train_model(compose_train(tiny_cache, "device=cuda"), tmp_path)
    assert torch.cuda.max_memory_allocated() > 0
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    assert result.metrics["latency_ms"] > 0 and result.metrics["latency_ms_cuda"] > 0  # latency.cuda=true
    loaded = load_model(result.model_path)  # onto the CPU by default
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())


def test_latency_is_measured_on_cuda() -> None:
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU())
    assert measure_latency(model, (1, 16, 16), device="cuda", warmup=1, repeats=3) > 0
    assert next(model.parameters()).device.type == "cuda"
    metrics = cost_metrics(model.cpu(), (1, 16, 16), LatencySettings(warmup=1, repeats=3))
    assert metrics["latency_ms"] > 0 and metrics["latency_ms_cuda"] > 0
