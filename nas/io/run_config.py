"""What a finished run's saved Hydra config (``<run>/.hydra/config.yaml``) says, read
with a safe YAML loader (``nas/`` does not depend on Hydra or OmegaConf outside
``nas/io/registry.py``)."""

from __future__ import annotations

from pathlib import Path

import yaml


def run_cache_dir(run_dir: str | Path) -> Path | None:
    """The ``data.cache_dir`` the run in ``run_dir`` used; None without a saved config or
    where Hydra saved an interpolation (``${...}``) rather than a value."""
    config = Path(run_dir) / ".hydra" / "config.yaml"
    if not config.is_file():
        return None
    data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
    cache_dir = data.get("cache_dir")
    if not isinstance(cache_dir, str) or "${" in cache_dir:
        return None
    return Path(cache_dir).expanduser()
