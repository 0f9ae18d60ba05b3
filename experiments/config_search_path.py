"""The user's config folders (``MELNAS_CONFIG_PATH``, ``nas.io.config_dirs``) on the config
search path of every Hydra app and every ``compose`` the demo and the study run."""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

from nas.io.config_dirs import check_builtin_conf_importable, user_config_dirs


class UserConfigSearchPath(SearchPathPlugin):
    """Appends the ``MELNAS_CONFIG_PATH`` folders after melnas's own ``conf/``; read each time
    Hydra builds a search path (an app's start, a ``compose``)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for folder in user_config_dirs():
            search_path.append(provider="melnas-user", path=f"file://{folder}")


def register_with_hydra() -> None:
    """Check ``MELNAS_CONFIG_PATH`` and that melnas's own ``conf`` package is the one Python
    finds (a ``MelnasError`` naming the bad folder or file), and register
    ``UserConfigSearchPath`` with Hydra (idempotent). Hydra finds plugins only in a
    top-level ``hydra_plugins`` package; registering by hand keeps melnas's layout."""
    user_config_dirs()
    check_builtin_conf_importable()
    Plugins.instance().register(UserConfigSearchPath)
