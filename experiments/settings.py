"""Config -> typed settings, one way: ``settings_from(node, SettingsClass, prefix=...)``.

Every entry point turns its composed Hydra config into frozen dataclasses with this one
helper and passes them, with plain arguments and built objects, to the engine. The
helper resolves interpolations, rejects unknown and missing keys naming their config path,
checks scalar types (an int is accepted for a float), fills nested dataclasses, and lets
each dataclass's ``__post_init__`` validate values. Config nodes that describe objects
(``_target_``: reward, controller, optimizer) are built with ``build`` here, never in ``nas/``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Iterable, Mapping, TypeVar, Union

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from nas.errors import MelnasError

T = TypeVar("T")
SCALARS = (bool, int, float, str)


def plain(node: Any) -> Any:
    """A config node as plain Python data (dicts, lists, scalars), interpolations resolved."""
    if isinstance(node, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as error:
            key = getattr(error, "full_key", "") or "a value"
            raise MelnasError(f"{key} is required (it is ??? in the config): pass {key}=...") from error
    return node


def build(node: Any, **overrides: Any) -> Any:
    """The object a ``_target_`` node describes (``_partial_: true`` gives a factory), with
    ``overrides`` in place of the node's own arguments."""
    return instantiate(plain(node), _convert_="all", **overrides)


def settings_from(node: Any, cls: type[T], *, prefix: str = "", skip: tuple[str, ...] = ()) -> T:
    """``cls`` (a dataclass) filled from ``node`` (a config node or a mapping).

    ``prefix`` is the node's path in the config (``"trainer"``), used in error messages.
    ``skip`` lists keys (dotted paths below ``node``) that are not settings: config
    groups passed on as data or built into objects by the caller.
    """
    values = plain(node)
    if not isinstance(values, Mapping):
        raise MelnasError(f"{prefix or 'the config'} must be a mapping of settings, got {values!r}")
    return _fill(cls, values, prefix, skip)


def _fill(cls: type[T], values: Mapping[str, Any], prefix: str, skip: tuple[str, ...]) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    here = {s for s in skip if "." not in s}
    below = {s.split(".", 1)[0]: s.split(".", 1)[1] for s in skip if "." in s}
    unknown = sorted(str(k) for k in values if k not in fields and k not in here)
    if unknown:
        names = ", ".join(_path(prefix, k) + (did_you_mean(prefix, k, fields) or _package_hint(prefix, k))
                          for k in unknown)
        raise MelnasError(f"unknown setting(s) {names}; known in {prefix or 'the config'}: {', '.join(sorted(fields))}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        if name in here:
            continue
        path = _path(prefix, str(name))
        kind = hints[name]
        nested = _dataclass_of(kind)
        if nested is not None and isinstance(value, Mapping):
            inner_skip = tuple(v for k, v in below.items() if k == name)
            kwargs[name] = _fill(nested, value, path, inner_skip)
        else:
            kwargs[name] = _checked(value, kind, path)
    missing = [_path(prefix, n) for n, f in fields.items() if n not in kwargs and n not in here and _required(f)]
    if missing:
        raise MelnasError(f"missing setting(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except TypeError as error:  # a dataclass rejecting a value's type
        raise MelnasError(f"{prefix or 'config'}: {error}") from error


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _options(kind: Any) -> tuple[Any, ...]:
    """The members of ``X | Y`` / ``Optional[X]``, or ``(kind,)``."""
    if typing.get_origin(kind) in (Union, types.UnionType):
        return typing.get_args(kind)
    return (kind,)


def _dataclass_of(kind: Any) -> type | None:
    for option in _options(kind):
        if dataclasses.is_dataclass(option):
            return option
    return None


def _checked(value: Any, kind: Any, path: str) -> Any:
    """``value`` if it fits ``kind`` (an int where a float is wanted becomes a float)."""
    options = _options(kind)
    if value is None:
        if type(None) in options or kind is Any:
            return None
        raise MelnasError(f"{path} must not be null")
    scalars = [o for o in options if o in SCALARS]
    if not scalars or len(scalars) < len([o for o in options if o is not type(None)]):
        return value  # containers, Any, paths: passed as they are
    for option in scalars:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value) if isinstance(value, int) else value
        if option is str and isinstance(value, str):
            return value
    wanted = " or ".join(o.__name__ for o in options)
    raise MelnasError(f"{path}={value!r}: expected {wanted}")


def _package_hint(prefix: str, name: str) -> str:
    """An ``experiment`` key at the top: an experiment file that lacks its package line."""
    if prefix or name != "experiment":
        return ""
    return (" (an experiment/*.yaml file puts its keys under experiment: unless its first line is "
            "'# @package _global_')")


def did_you_mean(prefix: str, name: str, known: Iterable[str]) -> str:
    """`` (did you mean trainer.epochs?)`` for a misspelt setting, else ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f" (did you mean {_path(prefix, close[0])}?)" if close else ""
