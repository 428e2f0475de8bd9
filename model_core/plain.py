"""Dataclasses as plain JSON values and back: what crosses a process boundary (the worker's jobs).

``to_plain`` turns paths into strings and tuples into lists; ``from_plain`` rebuilds a dataclass from
such a dict using the field types, so ``tuple[int, ...]``, ``Path | None`` and nested dataclasses come
back as they were. Each typed value's ``to_dict``/``from_dict`` is a one-line call to these.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, TypeVar

from .errors import InputError

T = TypeVar("T")


def to_plain(value: Any) -> Any:
    """``value`` with dataclasses as dicts, paths as strings and tuples as lists, all the way down."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: to_plain(item) for key, item in value.items()}
    return value


def from_plain(cls: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild dataclass ``cls`` from ``to_plain``'s dict; missing fields take their defaults."""
    if not isinstance(data, Mapping):
        raise InputError(f"{cls.__name__} needs a dict of its fields, not {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        # A worker Python running another version of the plugin is the likely cause.
        raise InputError(f"{cls.__name__} has no field {', '.join(unknown)}: are QGIS and the worker Python "
                         "running the same SCL DeepLab version?")
    return cls(**{name: _typed(hints[name], value) for name, value in data.items()})


def _typed(hint: Any, value: Any) -> Any:
    """``value`` converted to the type ``hint`` names, where JSON lost it (paths, tuples, dataclasses)."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in args if arg is not type(None)]
        return _typed(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_plain(hint, value)
    if isinstance(hint, type) and issubclass(hint, PurePath):
        return hint(value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], item) for item in value)
        return tuple(_typed(arg, item) for arg, item in zip(args, value, strict=True)) if args else tuple(value)
    if origin is list and args:
        return [_typed(args[0], item) for item in value]
    return value
