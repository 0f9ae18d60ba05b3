"""Find search spaces by name without naming them in code.

A space is registered by its YAML in ``conf/search_space/<name>.yaml`` (with a
``_target_``); this module instantiates it through Hydra, exactly as a search run
does. Adding a space therefore needs one Python file and one YAML, nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from nas.errors import MelnasError
from search_spaces.base import SearchSpace

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
SPACE_CONF_DIR = CONF_DIR / "search_space"


def available_spaces() -> list[str]:
    """Names of every space that has a YAML in ``conf/search_space/``."""
    return sorted(p.stem for p in SPACE_CONF_DIR.glob("*.yaml"))


def space_config(name: str) -> dict[str, Any]:
    """The YAML of space ``name`` as a plain dict."""
    path = SPACE_CONF_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"unknown search space {name!r}: no {path}. Available: {', '.join(available_spaces())}"
        )
    with path.open() as fh:
        return yaml.safe_load(fh) or {}


def build_space(config: Mapping[str, Any] | str, **overrides: Any) -> SearchSpace:
    """Instantiate a space from its config dict (with ``_target_``) or its registered name."""
    cfg = space_config(config) if isinstance(config, str) else dict(config)
    cfg.update(overrides)
    try:
        space = instantiate(cfg, _convert_="all")
    except InstantiationException as err:
        raise MelnasError(
            f"search_space: cannot build {cfg.get('_target_')} ({err.__cause__ or err}); check the space's "
            "config file (conf/search_space/<name>.yaml) and the search_space.* overrides against that "
            "class's constructor"
        ) from err
    if not isinstance(space, SearchSpace):
        raise TypeError(f"{cfg.get('_target_')} did not build a SearchSpace")
    return space
