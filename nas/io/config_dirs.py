"""Where melnas finds its YAML configs: the built-in ``conf/`` and the user's own folders.

A user keeps a search space, a data format or a controller in a project of their own,
outside melnas's checkout, in a folder laid out like ``conf/`` (``search_space/foo.yaml``,
``experiment/search_space/quick_foo.yaml``, ``data/format/bar.yaml``, ...), and names it in
``MELNAS_CONFIG_PATH`` (several folders separated by ``os.pathsep``). That one setting
reaches every command: the Hydra apps see those folders on their config search path
(``experiments.config_search_path``, registered by the ``experiments`` package), and the registries
of spaces and data formats, which the argparse tools and the tests read, list their YAMLs
(``group_configs``). The Python code a config's ``_target_`` or ``reader`` names is
imported as any module is: the user installs their package or puts it on ``PYTHONPATH``.

A user file may not share its name with a built-in one or one in another user folder:
Hydra would silently take the first, so both places refuse it instead.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Mapping

from nas.errors import MelnasError

CONFIG_PATH_ENV = "MELNAS_CONFIG_PATH"
BUILTIN_CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def user_config_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """The folders ``MELNAS_CONFIG_PATH`` names, in order, each checked: it exists and holds
    no YAML whose path a built-in config or another of these folders already has."""
    value = (os.environ if env is None else env).get(CONFIG_PATH_ENV, "")
    folders = [Path(part.strip()).expanduser().resolve() for part in value.split(os.pathsep) if part.strip()]
    seen: dict[Path, Path] = {}  # a config's path below its folder -> the file
    for folder in folders:
        if not folder.is_dir():
            raise MelnasError(f"{CONFIG_PATH_ENV} names {folder}, which is not a folder; give folders laid out "
                              "like melnas's conf/ (e.g. <folder>/search_space/<name>.yaml)")
        for path in sorted(folder.rglob("*.yaml")):
            relative = path.relative_to(folder)
            if (BUILTIN_CONF_DIR / relative).is_file():
                raise MelnasError(f"{path} has the name of melnas's own conf/{relative.as_posix()}, which would hide "
                                  f"it; rename yours (the name is what commands select it by)")
            if relative in seen:
                raise MelnasError(f"{path} and {seen[relative]} have one name; Hydra would take only the first: "
                                  "rename one (the name is what commands select it by)")
            seen[relative] = path
    return folders


def config_dirs() -> list[Path]:
    """Every config folder: the built-in ``conf/`` first, then the user's."""
    return [BUILTIN_CONF_DIR, *user_config_dirs()]


def group_configs(group: str) -> dict[str, Path]:
    """The YAML files of config group ``group`` (``"search_space"``, ``"data/format"``) over
    every config folder, by name."""
    return {path.stem: path for folder in config_dirs() for path in sorted((folder / group).glob("*.yaml"))}


def check_builtin_conf_importable() -> None:
    """The Hydra apps load melnas's configs as the Python package ``conf``; a folder of that
    name earlier on ``sys.path`` (a user project's ``conf/`` on ``PYTHONPATH``) hides it,
    and Hydra would only say "Primary config module 'conf' not found"."""
    spec = importlib.util.find_spec("conf")
    found = [Path(p).resolve() for p in (spec.submodule_search_locations or [])] if spec else []
    if found and BUILTIN_CONF_DIR not in found:
        raise MelnasError(f"the folder {found[0]} hides melnas's config package 'conf' ({BUILTIN_CONF_DIR}): it is on "
                          "PYTHONPATH (or the working directory of `python -m`); rename your config folder "
                          "(e.g. melnas_conf/) and name it in MELNAS_CONFIG_PATH")
