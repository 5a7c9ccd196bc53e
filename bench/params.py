"""Parameters declared as dataclasses: parsing, validation and grid expansion.

Every method and degradation declares its parameters as a dataclass with
defaults. This module turns command-line strings (``--set tv.weight=0.1``) and
config-file values into typed values, validates them, and expands lists into a
grid, as benchopt does.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class P:
    ...     sigma: float = 25.0
    ...     mode: str = "gaussian"
    >>> build_params(P, {"sigma": "15"}, owner="noise")
    P(sigma=15.0, mode='gaussian')
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from bench.errors import ParameterError

NONE_WORDS = {"none", "null", ""}


def suggest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def _resolved_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, annotation: Any, owner: str, name: str) -> Any:
    """Convert ``value`` (often a string from the command line) to ``annotation``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, owner, name)
            except ParameterError as err:
                errors.append(err)
        raise errors[0]
    if origin is typing.Literal:
        allowed = args
        for option in allowed:
            if str(option) == str(value):
                return option
        raise ParameterError(
            f"{owner}.{name}={value!r} is not allowed; choose one of "
            f"{', '.join(map(str, allowed))}.{suggest(str(value), [str(a) for a in allowed])}"
        )
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                value = json.loads(text)
            else:
                value = [v for v in text.replace(";", ",").split(",") if v.strip()]
        inner = args[0] if args else str
        items = [_coerce(v, inner, owner, name) for v in value]
        return tuple(items) if origin is tuple else items
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if annotation is int:
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(value)
                return int(value)
            return int(str(value).strip())
        if annotation is float:
            if isinstance(value, bool) or not math.isfinite(number := float(value)):
                raise ValueError(value)  # inf/nan: no parameter means them, and they fail every cell later
            return number
        if annotation is str:
            return str(value)
    except (TypeError, ValueError):
        kind = getattr(annotation, "__name__", str(annotation))
        finite = " (finite)" if annotation is float else ""
        raise ParameterError(f"{owner}.{name}={value!r} is not a valid{finite} {kind}.") from None
    return value


def build_params(cls: type, overrides: Mapping[str, Any], owner: str) -> Any:
    """Instantiate dataclass ``cls`` with ``overrides`` coerced to the field types.

    Unknown keys and invalid values raise :class:`ParameterError` naming the
    parameter. Validation beyond types lives in the dataclass' ``__post_init__``,
    which should raise ``ValueError``; it is re-raised as ``ParameterError``.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _resolved_types(cls)
    kwargs = {}
    for key, value in overrides.items():
        if key not in fields:
            known = ", ".join(fields) or "(none)"
            raise ParameterError(
                f"unknown parameter '{owner}.{key}'.{suggest(key, list(fields))} "
                f"Parameters of {owner}: {known}."
            )
        kwargs[key] = _coerce(value, hints[key], owner, key)
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ParameterError(f"{owner}: {err}") from None


def params_to_dict(params: Any) -> dict[str, Any]:
    """JSON-friendly dict of a parameter dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(params), default=str))


def describe_fields(cls: type) -> list[tuple[str, str, Any]]:
    """(name, type name, default) for each field, for ``bench list``."""
    hints = _resolved_types(cls)
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        kind = hints[f.name]
        kind_name = getattr(kind, "__name__", None) or str(kind).replace("typing.", "")
        rows.append((f.name, kind_name, default))
    return rows


def expand_grid(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Expand list-valued entries into the cartesian product of dicts.

    >>> expand_grid({"a": [1, 2], "b": "x"})
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
    """
    keys = list(values)
    options = [v if isinstance(v, list) else [v] for v in values.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*options)]


def split_grid_string(text: str) -> Any:
    """``'15,25'`` -> ``['15', '25']`` (a grid); ``'[1,2]'`` stays a single list value."""
    stripped = text.strip()
    if stripped.startswith("["):
        return stripped
    parts = [p.strip() for p in stripped.split(",")]
    return parts if len(parts) > 1 else stripped


def shared_fields(target: type, params: Any) -> dict[str, Any]:
    """The values of ``params`` (a dataclass instance) for the fields the dataclass ``target`` also has: a plugin
    builds its solver's settings from its parameters without copying them field by field.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Fit:
    ...     iterations: int
    ...     lr: float = 0.01
    >>> @dataclass
    ... class Params:
    ...     lr: float = 0.1
    ...     task: str = "auto"
    >>> shared_fields(Fit, Params())
    {'lr': 0.1}
    """
    names = {f.name for f in dataclasses.fields(target)}
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params) if f.name in names}

