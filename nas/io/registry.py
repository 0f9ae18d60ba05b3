"""Find search spaces by name without naming them in code.

A space is registered by its YAML in ``conf/search_space/<name>.yaml`` (with a
``_target_``), or in ``search_space/<name>.yaml`` of a folder in ``MELNAS_CONFIG_PATH``
(``nas.io.config_dirs``); this module instantiates it through Hydra, exactly as a search
run does. Adding a space therefore needs one Python file and one YAML, nothing else.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

import yaml
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from nas.errors import MelnasError
from nas.io.config_dirs import CONFIG_PATH_ENV, config_dirs, group_configs
from search_spaces.base import SearchSpace

SPACE_GROUP = "search_space"
EXPERIMENT_SPACE_GROUP = "experiment/search_space"  # <experiment>_<space>.yaml: an experiment's settings for one space


def available_spaces() -> list[str]:
    """Names of every space that has a YAML in ``conf/search_space/`` or a user config folder."""
    return sorted(group_configs(SPACE_GROUP))


def space_config(name: str) -> dict[str, Any]:
    """The YAML of space ``name`` as a plain dict."""
    configs = group_configs(SPACE_GROUP)
    if name not in configs:
        raise ValueError(
            f"unknown search space {name!r}: no {SPACE_GROUP}/{name}.yaml in {', '.join(map(str, config_dirs()))} "
            f"(a space of your own: put its folder in {CONFIG_PATH_ENV}). Available: {', '.join(sorted(configs))}"
        )
    with configs[name].open() as fh:
        return yaml.safe_load(fh) or {}


def build_space(config: Mapping[str, Any] | str, **overrides: Any) -> SearchSpace:
    """Instantiate a space from its config dict (with ``_target_``) or its registered name."""
    cfg = space_config(config) if isinstance(config, str) else dict(config)
    cfg.update(overrides)
    try:
        space = instantiate(cfg, _convert_="all")
    except InstantiationException as err:
        target = str(cfg.get("_target_"))
        problem = _import_problem(target) or (
            f"cannot build {target} ({err.__cause__ or err}); check the space's config file "
            "(search_space/<name>.yaml) and the search_space.* overrides against that class's constructor")
        raise MelnasError(f"search_space: {problem}") from err
    if not isinstance(space, SearchSpace):
        raise TypeError(f"{cfg.get('_target_')} did not build a SearchSpace")
    return space


def _import_problem(target: str) -> str | None:
    """Why ``target`` (``package.module.Class``) cannot be imported, for the user; None when it can."""
    module_name, _, attribute = target.rpartition(".")
    if not module_name:
        return None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if missing.name and (module_name == missing.name or module_name.startswith(f"{missing.name}.")):
            return (f"cannot import {target} ({missing}); a space's module must be importable: install the package "
                    "that holds it (pip install -e <its project>) or add the folder above it to PYTHONPATH")
        return f"{target} needs {missing.name!r}, which is not installed ({missing})"
    except ImportError as error:
        return f"cannot import {module_name} ({error})"
    if not hasattr(module, attribute):
        classes = sorted(name for name, value in vars(module).items()
                         if isinstance(value, type) and issubclass(value, SearchSpace) and value.__module__ == module_name)
        return f"{module_name} has no {attribute!r}; its search spaces: {', '.join(classes) or 'none'}"
    return None


def unmatched_experiment_space_files(experiment: str | None) -> list[Path]:
    """The files of ``experiment/search_space/`` that start with ``<experiment>_`` but name no
    space: the search would apply ``quick_<space>.yaml`` to that space, so a misspelt name
    (``quick_tinycnn.yaml``) would be ignored without a word."""
    if not experiment:
        return []
    spaces = set(available_spaces())
    prefix = f"{experiment}_"
    return [path for name, path in sorted(group_configs(EXPERIMENT_SPACE_GROUP).items())
            if name.startswith(prefix) and name[len(prefix):] not in spaces]
