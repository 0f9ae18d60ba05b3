"""Checkpoints that survive a crash at any instant, and the random state a resume needs.

``save_checkpoint`` writes through ``nas.io.atomic`` (temporary file, fsync, rename), so ``last.pt`` is always either the previous complete checkpoint or the new one.
``load_checkpoint`` uses ``torch.load(weights_only=True)``: a checkpoint may hold only
tensors and plain Python containers, numbers, strings, ``None``. Random-generator
states are converted to that form by ``capture_rng_state``.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from nas.errors import MelnasError
from nas.io.atomic import atomic_open



class CheckpointError(MelnasError):
    """A checkpoint is missing, unreadable or was not written by this version of melnas."""


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + fsync + ``os.replace``)."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        torch.save(dict(state), fh)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` (tensors land on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict")
    return state


def capture_rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's (legacy global) and torch's global generators.

    The NumPy key array becomes a tensor so that the result loads with
    ``weights_only=True``; CUDA states are captured when CUDA is initialised.
    """
    version, mt_state, gauss_next = random.getstate()
    np_state = np.random.get_state(legacy=False)
    return {
        "python": {"version": version, "state": list(mt_state), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of ``capture_rng_state``."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npy["bit_generator"],
            "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": int(npy["pos"])},
            "has_gauss": int(npy["has_gauss"]),
            "gauss": float(npy["gauss"]),
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Run the block, then put every global generator back as it was before it.

    Work whose randomness must not shift the run's random streams (timing a layer
    for the latency table builds and initialises modules) goes inside, so that a
    resumed run, which finds those timings cached, draws the same numbers as an
    uninterrupted one.
    """
    saved = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(saved)
