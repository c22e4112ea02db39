"""Strict parsing of TOML tables into frozen dataclasses, shared by every spec.

`parse_table` builds a dataclass from a table, refusing unknown keys (with a suggestion) and
values of the wrong type, then calls the dataclass's ``validate(where)`` if it has one. It
knows nothing of benchmarks: configs, model kinds, datasets and methods all use it.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import types
import typing
from typing import Any, Literal, Union

from .errors import FairbenchError, lookup, suggest


def type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(hint) if a is not type(None))
    if origin in (list, tuple):
        return "a list"
    if origin is dict or hint is dict or dataclasses.is_dataclass(hint):
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def convert(value: Any, hint, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise FairbenchError(f"{where} = {value!r} is not allowed.{suggest(str(value), [str(c) for c in choices])}")
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        tables = [option for option in options if dataclasses.is_dataclass(option)]
        if isinstance(value, dict) and len(tables) == 1:  # its own messages say what is wrong in the table
            return parse_table(tables[0], value, where)
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(value, option, where)
            except FairbenchError:
                continue
        raise FairbenchError(f"{where} must be {type_name(hint)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise FairbenchError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        items = [convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise FairbenchError(f"{where} must be a table, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise FairbenchError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FairbenchError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise FairbenchError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise FairbenchError(f"{where} must be a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return parse_table(hint, value, where)
    raise TypeError(f"unsupported config type {hint!r}")


def parse_table(cls, data: Any, where: str):
    """Build dataclass `cls` from a TOML table, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise FairbenchError(f"[{where}] must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in known:
            raise FairbenchError(f"Unknown key {where}.{key!r}.{suggest(key, known)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in data:
            kwargs[f.name] = convert(data[f.name], hints[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise FairbenchError(f"{where}.{f.name} is required ({type_name(hints[f.name])})")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(where)
    return obj


def parse_variant(table: dict, registry: dict[str, type], *, key: str, section: str, kind: str):
    """Parse a table whose `key` names its spec class in `registry` (``[model] kind``, ``[dataset] name``)."""
    choice = table.get(key)
    if choice is None:
        raise FairbenchError(f"[{section}] needs a '{key}'. Valid: {', '.join(sorted(registry))}.")
    return parse_table(lookup(registry, choice, kind), table, section)


def import_optional(*modules: str) -> None:
    """Import modules that register themselves, tolerating only their own absence."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def positive(value: int, where: str) -> None:
    if value <= 0:
        raise FairbenchError(f"{where} must be positive, got {value}")
