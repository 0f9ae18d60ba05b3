"""Data set formats: how the files of a data set become a ``Listing``.

A format is one reader function and one YAML, ``conf/data/format/<name>.yaml`` (or
``data/format/<name>.yaml`` in a folder of ``MELNAS_CONFIG_PATH``: ``nas.io.config_dirs``)::

    name: esc50
    reader: nas.data.formats.esc50.read_esc50   # module.function
    esc10: false                                # options: the reader's keyword arguments

The reader is called as ``reader(source, **options)`` (``source``: ``data.root``, or
``data.manifest`` for the ``manifest`` format) and returns the same ``Listing`` as a CSV
manifest: recordings with path, label, group and a fixed split or a fold, plus the
files it did not use with their reason. ``data.format=esc50`` on the command line names
a format (its YAML gives the options); ``data/format=esc50 data.format.esc10=true``
selects it as a config group whose options can then be set.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from nas.data.errors import DataError
from nas.data.manifest import Listing
from nas.io.config_dirs import CONFIG_PATH_ENV, group_configs

FORMAT_GROUP = "data/format"
Reader = Callable[..., Listing]


def available_formats() -> list[str]:
    """Names of every format that has a YAML in ``conf/data/format/`` or a user config folder."""
    return sorted(group_configs(FORMAT_GROUP))


def format_config(name: str) -> dict[str, Any]:
    """The YAML of format ``name`` as a plain dict."""
    configs = group_configs(FORMAT_GROUP)
    if name not in configs:
        raise DataError(f"data.format={name!r} is unknown (no {FORMAT_GROUP}/{name}.yaml in conf/ or a "
                        f"{CONFIG_PATH_ENV} folder); available formats: {', '.join(sorted(configs))}")
    with configs[name].open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


@dataclass(frozen=True)
class DataFormat:
    """A format resolved from ``data.format``: its reader and the options to call it with."""

    name: str
    reader: str  # "module.function"
    options: dict[str, Any]

    @classmethod
    def from_config(cls, value: Mapping[str, Any] | str | None) -> DataFormat:
        """``data.format``: a name (``esc50``), a mapping from the config group, or None
        (``folders``). Unknown options are an error naming the valid ones."""
        config = format_config(value or "folders") if not isinstance(value, Mapping) \
            else {str(key): _plain(item) for key, item in value.items()}
        name = str(config.pop("name", "") or "")
        reader = str(config.pop("reader", "") or "")
        if not name or not reader:
            raise DataError(f"data.format={dict(config)} needs a name and a reader "
                            "(module.function), as in conf/data/format/*.yaml")
        found = cls(name, reader, dict(config))
        accepted = list(inspect.signature(found.function()).parameters)[1:]
        unknown = sorted(set(found.options) - set(accepted))
        if unknown:
            raise DataError(f"data.format.{unknown[0]} is not an option of data.format="
                            f"{name}; its options are {accepted or 'none'}")
        return found

    def function(self) -> Reader:
        module, _, attribute = self.reader.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError, ValueError) as error:
            raise DataError(f"data.format={self.name}: reader {self.reader!r} cannot be "
                            f"imported ({error}); give module.function, in a package that is installed or "
                            "on PYTHONPATH") from error

    def read(self, source: Path) -> Listing:
        return self.function()(source, **self.options)

    def identity(self) -> dict[str, Any]:
        """What the cache fingerprint records of the format."""
        return {"name": self.name, "reader": self.reader, **self.options}


def _plain(value: Any) -> Any:
    """Config values (OmegaConf lists and mappings too) as plain, JSON-able Python."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(item) for item in value]
    return value
