"""``PrepareSettings``: the ``data`` config group, checked, and what makes a cache what it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from nas.data import cache
from nas.data.errors import DataError
from nas.data.features import FeatureParams
from nas.data.formats import DataFormat
from nas.data.manifest import Listing
from nas.data.parallel import available_cores
from nas.data.splits import SplitRatios


@dataclass(frozen=True)
class PrepareSettings:
    """The ``data`` config group, checked. Only the format and its options, ``features``,
    ``splits``, ``seed``, the folds and the inputs decide the cache; ``num_workers`` and
    ``rebuild`` only decide how it is made."""

    root: Path | None
    manifest: Path | None
    cache_dir: Path
    features: FeatureParams
    splits: SplitRatios
    seed: int = 0
    num_workers: int | None = None
    rebuild: bool = False
    data_format: DataFormat = field(
        default_factory=lambda: DataFormat.from_config("folders"))
    test_fold: int | None = None
    val_fold: int | None = None

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> PrepareSettings:
        manifest = data.get("manifest")
        root = data.get("root")
        data_format = DataFormat.from_config(data.get("format"))
        if manifest and data_format.name == "folders":  # data.manifest alone selects it
            data_format = DataFormat.from_config("manifest")
        if manifest and data_format.name != "manifest":
            raise DataError(f"data.manifest={manifest} is set, but data.format="
                            f"{data_format.name} reads data.root: unset data.manifest")
        if data_format.name == "manifest" and not manifest:
            raise DataError("data.format=manifest needs data.manifest: a CSV with "
                            "path,label[,group][,split][,fold]")
        if not manifest and not root:
            raise DataError("set data.root (one folder per class, or the data set's folder "
                            "with data.format) or data.manifest (a CSV)")
        if not data.get("cache_dir"):
            raise DataError("set data.cache_dir: the folder the prepared cache is written to")
        if data_format.name == "folders" and root and Path(data["cache_dir"]).expanduser().resolve() \
                .is_relative_to(Path(root).expanduser().resolve()):
            raise DataError(f"data.cache_dir={data['cache_dir']} is inside data.root={root}, "
                            "where it would be read as a class: put the cache elsewhere")
        workers = data.get("num_workers")
        if workers is not None and int(workers) < 0:
            raise DataError(f"data.num_workers={workers} is invalid: expected >= 0 or null")
        return cls(
            root=Path(root).expanduser() if root and not manifest else None,
            manifest=Path(manifest).expanduser() if manifest else None,
            cache_dir=Path(data["cache_dir"]).expanduser(),
            features=FeatureParams.from_mapping(data),
            splits=SplitRatios.from_mapping(data.get("splits") or {}),
            seed=int(data.get("seed", 0)),
            num_workers=None if workers is None else int(workers),
            rebuild=bool(data.get("rebuild", False)),
            data_format=data_format,
            test_fold=_optional_int(data, "test_fold"),
            val_fold=_optional_int(data, "val_fold"),
        )

    def identity(self) -> dict[str, Any]:
        """What, besides the input files, makes the cache what it is."""
        return {"format_version": cache.FORMAT_VERSION, **self.features.to_dict(),
                "splits": self.splits.as_dict(), "seed": self.seed,
                "format": self.data_format.identity(), "test_fold": self.test_fold,
                "val_fold": self.val_fold}

    def read_listing(self) -> Listing:
        return self.data_format.read(self.manifest or self.root)

    @property
    def workers(self) -> int:
        return available_cores() if self.num_workers is None else self.num_workers


def _optional_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"data.{key}={value!r} is not a whole number (or null)") from None
