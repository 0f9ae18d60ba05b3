"""Tiny real data and a tiny trained model for the results tests (train, evaluate, predict, export).

The audio is generated here (three clearly different classes: a low tone, a high tone,
noise), then goes through the real ``prepare`` pipeline; the model is a real
``enas_macro`` network, small enough to train in seconds on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from nas.data.prepare import prepare_dataset
from nas.io.config_dirs import BUILTIN_CONF_DIR
from experiments.cli import HydraRun
from experiments.train import train
from nas.train.job import TrainResult

SAMPLE_RATE = 16000
CLASSES = {"high": 1760.0, "low": 220.0, "noise": None}
TINY_SPACE = ["search_space=enas_macro", "search_space.num_layers=3", "search_space.filters=8"]


def write_tone_dataset(root: Path, *, files_per_class: int = 6, seconds: float = 2.5, seed: int = 0) -> Path:
    """One folder per class of short wav files; tones vary a little in pitch per file."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    for name, f0 in CLASSES.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(files_per_class):
            if f0 is None:
                signal = 0.2 * rng.standard_normal(t.size)
            else:
                signal = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.03 * i) * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(folder / f"{name}_{i}.wav", signal.astype(np.float32), SAMPLE_RATE)
    return root


def prepare_tiny(tmp: Path) -> Path:
    """Generate and prepare the tiny data set under ``tmp``; returns the cache dir."""
    root = write_tone_dataset(tmp / "audio")
    cache_dir = tmp / "cache"
    prepare_dataset({"root": str(root), "cache_dir": str(cache_dir), "n_mels": 32, "num_workers": 0}, progress=False)
    return cache_dir


def compose_train(cache_dir: Path, *overrides: str) -> DictConfig:
    """``conf/train.yaml`` at tiny settings: 2 epochs of a 3-layer, 8-filter network."""
    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[
                "arch=plain_sep3x3",
                *TINY_SPACE,
                f"data.cache_dir={cache_dir}",
                "train=quick",
                "train.epochs=2",
                "train.batch_size=16",
                "train.eval_batch_size=32",
                "latency_measure.warmup=1",
                "latency_measure.repeats=3",
                "device=cpu",
                *overrides,
            ],
        )


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_tiny(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="module")
def tiny_trained(tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train_model(compose_train(tiny_cache), tmp_path_factory.mktemp("tiny_train"))


def train_model(cfg: DictConfig, out_dir: Path) -> TrainResult:
    """``melnas-train``'s work on a composed ``cfg``, in ``out_dir``."""
    return train(cfg, HydraRun(Path(out_dir)))
