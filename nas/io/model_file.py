"""Save and load a trained model as ``model.pt``: one plain dict, loadable with ``weights_only=True``.

The file holds no pickled classes: the network is rebuilt from ``space_config`` (the
search-space YAML dict with its ``_target_``) and ``arch`` (the arch JSON dict) through
``nas.io.registry.build_space``, then its ``state_dict`` is loaded strictly. Everything
needed to use the model later travels with it: class names, input shape and the data
parameters (features and normalisation) that ``nas.data.features.windows_from_file``
needs to turn a new recording into model input. A model pruned by ``melnas-adapt``
also stores ``widths`` (``{channel group: channels}``), passed to ``space.build``.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from nas.io.checkpoint import save_checkpoint
from nas.io.registry import build_space
from search_spaces.base import Arch, SearchSpace
from search_spaces.channels import PrunableSpace

FORMAT = "melnas.model"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("state_dict", "arch", "space_config", "num_classes", "class_names", "input_shape", "data_meta")
# First bytes of files people pass by mistake (a recording in the model's place, say).
AUDIO_MAGIC = {b"RIFF": "a WAV", b"fLaC": "a FLAC", b"OggS": "an Ogg", b"ID3": "an MP3", b"FORM": "an AIFF"}
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


@dataclass
class TrainedModel:
    """A model rebuilt from ``model.pt`` with everything saved next to its weights."""

    model: nn.Module
    space: SearchSpace
    arch: Arch
    space_config: dict[str, Any]
    class_names: list[str]
    input_shape: tuple[int, int, int]
    data_meta: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)  # origin, arch_string, training summary ...
    path: Path | None = None
    widths: dict[str, int] = field(default_factory=dict)  # pruned channel counts (melnas-adapt); {} = the arch's

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def arch_string(self) -> str:
        return self.space.arch_string(self.arch)

    @property
    def network_hash(self) -> str:
        """``arch.hash``; for a pruned model a hash of the arch and the widths that differ
        from its own build's, since it is another network (the same network, however its
        widths were written down, gets the same hash)."""
        full = self.space.prunable_widths(self.arch) if self.widths and isinstance(self.space, PrunableSpace) else {}
        narrowed = {name: width for name, width in self.widths.items() if full.get(name) != width}
        if not narrowed:
            return self.arch.hash
        canonical = json.dumps({"arch": self.arch.hash, "widths": narrowed}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(canonical.encode()).hexdigest()[:12]


def to_plain(value: Any) -> Any:
    """Turn mappings, sequences, numpy values and paths into the plain types ``weights_only`` accepts."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in model.pt: {value!r}")


def build_network(
    space_config: Mapping[str, Any],
    arch_json: Mapping[str, Any],
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    widths: Mapping[str, int] | None = None,
) -> tuple[SearchSpace, Arch, nn.Module]:
    """Instantiate the space, validate the arch against it and build the standalone network.

    ``widths`` (pruned channel counts) are passed to ``space.build`` only when given.
    """
    space = build_space(dict(space_config))
    arch = space.arch_from_json_dict(arch_json)
    shape = tuple(int(v) for v in input_shape)
    if widths:
        model = space.build(arch, num_classes=int(num_classes), input_shape=shape, widths=dict(widths))
    else:
        model = space.build(arch, num_classes=int(num_classes), input_shape=shape)
    return space, arch, model


def save_model(
    path: str | Path,
    *,
    model: nn.Module,
    arch: Arch,
    space_config: Mapping[str, Any],
    class_names: list[str],
    input_shape: tuple[int, int, int],
    data_meta: Mapping[str, Any],
    info: Mapping[str, Any] | None = None,
    widths: Mapping[str, int] | None = None,
) -> Path:
    """Write ``model.pt`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "arch": to_plain(arch.to_json_dict()),
        "space_config": to_plain(space_config),
        "num_classes": len(class_names),
        "class_names": [str(c) for c in class_names],
        "input_shape": [int(v) for v in input_shape],
        "data_meta": to_plain(data_meta),
        "info": to_plain(dict(info or {})),
    }
    if widths:
        payload["widths"] = {str(k): int(v) for k, v in widths.items()}
    return save_checkpoint(path, payload)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw dict of a ``model.pt`` (``weights_only=True``), with its keys checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}: pass the model.pt written by melnas-train")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt or foreign file
        raise ValueError(f"{path} is not a readable melnas model.pt: {why_unreadable(path, err)}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a melnas model.pt: {what_it_holds(payload)}")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise ValueError(f"{path} lacks the keys {missing}; re-train it with melnas-train")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {payload['format_version']}, newer than this melnas "
            f"({FORMAT_VERSION}); upgrade melnas"
        )
    return payload


def why_unreadable(path: Path, err: Exception) -> str:
    """What ``path`` is, judged from its bytes, when ``torch.load`` failed on it.

    torch's own message for a foreign file is often an unpickler detail (``pop from empty
    list``, an opcode number), so the file is described instead and torch's error is
    kept only where the file does look like a torch archive.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(512)
    if size == 0:
        return "the file is empty (0 bytes); copy it again or re-train"
    if head.startswith(ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            return (f"it starts like a torch archive but its end is missing: the file is truncated ({size:,} bytes), "
                    "as after an interrupted copy, download or save; copy it again or re-train")
        return f"it is a zip archive that torch cannot load ({type(err).__name__}: {err})"
    for magic, kind in AUDIO_MAGIC.items():
        if head.startswith(magic):
            return (f"it is {kind} audio file, not a model; the model comes first: "
                    "melnas-predict <run>/model.pt <audio files...>")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"it is not a torch archive (a model.pt is a zip archive; this file begins {head[:8].hex(' ')})"
    first_line = text.strip().splitlines()[0][:60] if text.strip() else ""
    return f"it is a text file, not a torch archive (it begins {first_line!r})"


def what_it_holds(payload: Any) -> str:
    """Why a loadable torch file is not a model: what it is instead, and what to pass."""
    if not isinstance(payload, dict):
        return f"it holds a {type(payload).__name__}, not the dict melnas-train writes"
    if "supernet" in payload and "controller" in payload:
        return ("it is a melnas-search checkpoint (the supernet's shared weights), not a trained model; "
                "train the searched arch first: melnas-train arch=<run>/best_arch.json, then pass its model.pt")
    tag = payload.get("format")
    if tag is not None:
        return f"its format tag is {tag!r}, not {FORMAT!r}"
    keys = ", ".join(sorted(map(str, payload))[:8])
    return f"it is a torch file without the format tag {FORMAT!r} (its keys: {keys}); pass the model.pt of melnas-train"


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> TrainedModel:
    """Rebuild the network of ``model.pt``, load its weights strictly, put it in eval mode."""
    payload = read_checkpoint(path)
    space, arch, model = build_network(
        payload["space_config"],
        payload["arch"],
        num_classes=payload["num_classes"],
        input_shape=payload["input_shape"],
        widths=payload.get("widths"),
    )
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"the weights in {path} do not fit the network rebuilt from its space_config and arch: {err}"
        ) from err
    model.to(device).eval()
    return TrainedModel(
        model=model,
        space=space,
        arch=arch,
        space_config=dict(payload["space_config"]),
        class_names=list(payload["class_names"]),
        input_shape=tuple(payload["input_shape"]),
        data_meta=dict(payload["data_meta"]),
        info=dict(payload.get("info", {})),
        path=Path(path),
        widths=dict(payload.get("widths") or {}),
    )
