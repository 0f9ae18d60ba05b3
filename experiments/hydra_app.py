"""``@hydra_app("search")``: ``@hydra.main`` on melnas's ``conf/``, with Hydra's own
config errors said as melnas says a user error: one line, ``melnas-<app>: ...``, exit
status 2.

Hydra refuses a bad override before any melnas code runs, and its words lead users
astray: for a misspelt key (``trainer.epoch=3``) it suggests ``+trainer.epoch=3``, which
adds a key nothing reads. Here that becomes ``trainer.epoch is not a setting (did you mean
trainer.epochs?); known in trainer: ...``; an unknown config-group option lists the
options and where configs of one's own go; any other refusal (an override that does not
parse, a sweep value without ``-m``) keeps Hydra's words, on one line (``MELNAS_DEBUG=1``
prints the traceback too). Anything else Hydra raises propagates with its traceback.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from typing import Any, Callable, Mapping

import hydra
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from experiments.cli import debug_enabled
from experiments.settings import did_you_mean
from experiments.sweep_watch import mark_sweep_process
from nas.errors import MelnasError
from nas.io.config_dirs import CONFIG_PATH_ENV

FULL_ERROR_ENV = "HYDRA_FULL_ERROR"  # Hydra re-raises its errors instead of printing them

# The settings melnas-eval and melnas-adapt read from the model they are given.
MODEL_RECORDS = {
    "data": "the model.pt records the prepared cache it was trained on (cache_dir=... gives another)",
    "search_space": "the model.pt records its arch and space settings",
}


def hydra_app(config_name: str, *, taken_from: Mapping[str, str] | None = None
              ) -> Callable[[Callable[[DictConfig], Any]], Callable[..., Any]]:
    """Decorate an app's task function: ``melnas-<config_name>`` composed from ``conf/<config_name>.yaml``.

    ``taken_from`` maps the settings an app reads from elsewhere, not from its own config,
    to where they come from (``{"data": "it comes from the search run"}``): a user who
    sets one of them is told so, not only that it is no setting of the app.
    """

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[..., Any]:
        entry = hydra.main(version_base="1.3", config_path="../conf", config_name=config_name)(task)

        @functools.wraps(task)
        def run(*args: Any, **kwargs: Any) -> Any:
            mark_sweep_process()
            previous = os.environ.get(FULL_ERROR_ENV)
            os.environ[FULL_ERROR_ENV] = "1"
            try:
                return entry(*args, **kwargs)
            except (ConfigCompositionException, OverrideParseException, MelnasError) as error:
                message = describe_config_error(error, taken_from or {})
                if debug_enabled():
                    traceback.print_exc()
                print(f"melnas-{config_name}: {message}", file=sys.stderr)
                sys.exit(2)
            finally:
                if previous is None:
                    os.environ.pop(FULL_ERROR_ENV, None)
                else:
                    os.environ[FULL_ERROR_ENV] = previous

        return run

    return decorate


def describe_config_error(error: BaseException, taken_from: Mapping[str, str]) -> str:
    """One line for a config error of Hydra's (or a ``MelnasError`` raised while Hydra
    composes: a bad ``MELNAS_CONFIG_PATH``)."""
    flat = " ".join(str(error).split())
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and "/" in error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        options = ", ".join(error.options or []) or "none"
        return (f"{group}={option}: no {error.missing_cfg_file}.yaml; the options of {group}: {options} "
                f"(a config of your own: put the folder that holds {group}/ in {CONFIG_PATH_ENV})")
    cause = error.__cause__
    key = getattr(cause, "full_key", None)
    parent = getattr(cause, "parent_node", None)
    known = sorted(str(k) for k in parent.keys() if k != "hydra") if isinstance(parent, DictConfig) else []
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and key and known:
        prefix, _, name = str(key).rpartition(".")
        group = str(key).split(".")[0]
        if group in taken_from:
            return f"{key} is not a setting of this command: {taken_from[group]}"
        return (f"{key} is not a setting{did_you_mean(prefix, name, known)}; known in {prefix or 'the config'}: "
                f"{', '.join(known)}")
    if isinstance(error, OverrideParseException):
        return f"cannot read the override {error.override!r}: {flat}"
    return flat
