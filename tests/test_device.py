"""resolve_device: auto, explicit CPU/CUDA, and the errors that name the ``device=`` setting.

CUDA's presence is monkeypatched, so every branch runs on any machine."""

from __future__ import annotations

import pytest
import torch

from nas.runtime import resolve_device


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_is_cpu_without_cuda(no_cuda: None) -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_auto_is_cuda_with_cuda(two_gpus: None) -> None:
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda", 0)) == torch.device("cuda", 0)


@pytest.mark.parametrize("cuda_build", [None, "12.4"], ids=["cpu-only torch", "cuda torch, no device"])
def test_cuda_without_cuda_is_a_clear_error(no_cuda: None, monkeypatch: pytest.MonkeyPatch,
                                             cuda_build: str | None) -> None:
    monkeypatch.setattr(torch.version, "cuda", cuda_build)
    reason = "no CUDA support" if cuda_build is None else "no CUDA device is visible"
    for asked in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match=f"device='{asked}' was asked for but .*{reason}.*set device=cpu"):
            resolve_device(asked)


def test_cuda_index_beyond_the_visible_devices(two_gpus: None) -> None:
    with pytest.raises(ValueError, match="device='cuda:2' .* only 2 CUDA device"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("name", ["gpu", "", "cuda:x", "mps", "meta"])
def test_other_strings_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=f"device={name!r} is not .*use one of auto, cpu, cuda"):
        resolve_device(name)
