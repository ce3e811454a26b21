"""Typed dataclass configs <-> plain dicts (JSON/YAML), shared by bundles and training.

`config_from_dict` rebuilds nested frozen dataclasses from the dicts that
`config_to_dict` wrote, checking field names so that a typo in a YAML file or
a stale manifest fails loudly instead of being ignored.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass instance as a JSON-ready dict (tuples become lists)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_from_dict(cls: type[T], data: dict[str, Any] | None) -> T:
    """Build `cls` from `data`, recursing into nested dataclass fields.

    Raises ValueError naming the unknown keys; missing keys take defaults.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    defaults = {f.name: f.default for f in dataclasses.fields(cls)
                if dataclasses.is_dataclass(f.default) and not isinstance(f.default, type)}
    for key, default in defaults.items():
        # A partly given section keeps the other values of its default instance
        # (a run config's default may differ from the section class's own).
        if isinstance(data.get(key), dict):
            data[key] = {**config_to_dict(default), **data[key]}
    kwargs = {key: _coerce(hints[key], value, f"{cls.__name__}.{key}") for key, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where) if len(inner) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return config_from_dict(hint, value)
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        return tuple(value)
    if origin is list and isinstance(value, (list, tuple)):
        return [_coerce(args[0], v, where) if args else v for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "3e-4" as a string
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ValueError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value
