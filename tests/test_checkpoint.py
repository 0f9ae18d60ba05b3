"""Checkpoints: atomic replacement, weights_only loading, RNG state round trips."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nas.io import checkpoint as ckpt
from nas.io.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    preserved_rng_state,
    restore_rng_state,
    save_checkpoint,
)
from search_spaces.base import Categorical, InputChoice

CONF = Path(__file__).resolve().parents[1] / "conf"
DECISIONS = (
    Categorical("l0_op", ("a", "b", "c")),
    Categorical("l1_op", ("a", "b", "c")),
    InputChoice("l1_skip", 1),
    Categorical("l2_op", (3, 5)),
    InputChoice("l2_skip", 2),
)


def draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    state = {"weights": torch.arange(6.0).reshape(2, 3), "epoch": 3, "names": ["a", "b"], "none": None}
    path = save_checkpoint(tmp_path / "deep" / "last.pt", state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["weights"], state["weights"])
    assert loaded["epoch"] == 3 and loaded["names"] == ["a", "b"] and loaded["none"] is None


def test_an_atomic_write_gets_the_mode_open_would_give(tmp_path: Path) -> None:
    import stat

    from nas.io.atomic import atomic_write_bytes

    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    written = atomic_write_bytes(tmp_path / "atomic.bin", b"x")
    checkpoint = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})
    expected = stat.S_IMODE(plain.stat().st_mode)
    assert stat.S_IMODE(written.stat().st_mode) == expected  # not mkstemp's 0600
    assert stat.S_IMODE(checkpoint.stat().st_mode) == expected


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})

    def dies_half_way(obj: object, fh) -> None:  # noqa: ANN001
        fh.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left


def test_load_refuses_missing_corrupt_and_pickled_objects(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(corrupt)
    arbitrary = tmp_path / "object.pt"
    torch.save({"obj": Path("x")}, arbitrary)  # an arbitrary class: refused by weights_only
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(arbitrary)


def test_rng_state_survives_a_checkpoint(tmp_path: Path) -> None:
    seed_all(1)
    np.random.standard_normal()  # leave a cached Gaussian in NumPy's legacy state
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state()})
    expected = draws()
    draws()
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert draws() == expected


def test_preserved_rng_state_hides_the_block_s_draws() -> None:
    seed_all(0)
    expected = draws()
    seed_all(0)
    with preserved_rng_state():
        draws()
        torch.nn.Linear(8, 8)  # module initialisation draws from torch's generator
    assert draws() == expected


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "controller").glob("*.yaml")))
def test_every_controller_resumes_exactly_from_a_checkpoint(name: str, tmp_path: Path) -> None:
    factory = instantiate(OmegaConf.load(CONF / "controller" / f"{name}.yaml"))
    controller = factory(DECISIONS, seed=5)
    for _ in range(3):
        samples = controller.sample(4)
        controller.update(samples, [float(len(str(s.values))) for s in samples])
    save_checkpoint(tmp_path / "c.pt", {"controller": controller.state_dict()})
    expected = [s.values for s in controller.sample(6)]

    resumed = factory(DECISIONS, seed=99)
    resumed.load_state_dict(load_checkpoint(tmp_path / "c.pt")["controller"])
    assert [s.values for s in resumed.sample(6)] == expected
