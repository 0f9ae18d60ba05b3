"""Mixed precision in the one training step (nas/train/amp.py): the bf16 path on CPU
(torch's CPU autocast), the settings, and float32 unchanged by default."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.train.amp import FP32, resolve_amp
from nas.train.loop import train_step
from tests.test_train_fixtures import compose_train, tiny_cache, train_model  # noqa: F401 (fixture)


def toy_problem(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Two Gaussian blobs in 8-D and a small MLP (Linear layers autocast to bf16)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (64,), generator=gen)
    x = torch.randn(64, 8, generator=gen) + 2.0 * (y[:, None].float() - 0.5)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    return model, x, y


def test_bf16_steps_run_in_bf16_and_learn() -> None:
    model, x, y = toy_problem()
    amp = resolve_amp("bf16", torch.device("cpu"))
    assert amp.enabled and amp.dtype == torch.bfloat16 and amp.scaler is None
    dtypes: list[torch.dtype] = []
    model[2].register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(15):
        loss, logits = train_step(model, x, y, loss_fn=nn.functional.cross_entropy, optimizer=optimizer,
                                  grad_clip_norm=5.0, amp=amp)
        losses.append(float(loss))
    assert set(dtypes) == {torch.bfloat16}, "the forward pass ran under bf16 autocast"
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters()), "weights stay float32"
    assert losses[-1] < 0.7 * losses[0], losses


def test_float32_is_the_default_and_unchanged() -> None:
    model, x, y = toy_problem()
    reference, _, _ = toy_problem()
    dtypes: list[torch.dtype] = []
    model[2].register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        train_step(model, x, y, loss_fn=nn.functional.cross_entropy, optimizer=optimizer, grad_clip_norm=1.0)
        # The step as written before mixed precision existed.
        ref_optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(reference(x), y).backward()
        nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        ref_optimizer.step()
    assert set(dtypes) == {torch.float32}
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    assert resolve_amp("off", torch.device("cpu")) is FP32


def test_amp_settings() -> None:
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) is FP32, "auto is bf16 on a CUDA GPU only"
    with pytest.raises(ValueError, match="trainer.amp=fp16 needs a CUDA device"):
        resolve_amp("fp16", cpu, setting="trainer.amp")
    with pytest.raises(ValueError, match="amp='half' is not a precision"):
        resolve_amp("half", cpu)


def test_search_and_train_settings_check_amp() -> None:
    from nas.search.settings import TrainerSettings
    from nas.train.job import TrainJob

    assert TrainerSettings().amp == "off" and TrainJob(arch="x").amp == "off"
    with pytest.raises(ValueError, match="trainer.amp='half'"):
        TrainerSettings(amp="half")


def test_retraining_with_bf16_records_it(tiny_cache, tmp_path) -> None:  # noqa: F811 (fixture)
    result = train_model(compose_train(tiny_cache, "amp=bf16", "train.epochs=1"), tmp_path)
    assert result.metrics["training"]["amp"] == "bf16"
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
