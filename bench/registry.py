"""Registries of methods, degradations and trainers, with entry-point plugins.

A plugin is one file: a class decorated with ``@register_method("name")`` or
``@register_degradation("name")`` whose ``Params`` is a dataclass with defaults.
Built-in plugins live in the ``methods`` and ``degradations`` packages; third
parties expose modules under the entry-point groups
``restoration_bench.methods`` and ``restoration_bench.degradations``. Trainers
(``bench train NAME``) are click commands decorated with
``@register_trainer("name")`` in the modules of :mod:`bench.training`, which the
registry imports by name on first use (never statically: it sits below them).

Example:
    >>> from dataclasses import dataclass
    >>> from bench.api import Method
    >>> @register_method("example-copy")
    ... class Copy(Method):
    ...     '''Returns the observation.'''
    ...     @dataclass
    ...     class Params:
    ...         pass
    ...     def restore(self, obs, ctx):
    ...         return obs.y
    >>> get_method_class("example-copy") is Copy
    True
    >>> unregister("method", "example-copy")
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import io
import logging
import re
import textwrap
import tokenize
import typing
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from bench.errors import UnknownNameError
from bench.params import suggest

log = logging.getLogger(__name__)

T = TypeVar("T", bound=type)

_REGISTRIES: dict[str, dict[str, type]] = {"method": {}, "degradation": {}, "trainer": {}}
# trainers live in the shared training pipeline (bench.training), imported by name like the plugin packages
_BUILTIN_PACKAGES = {"method": "methods", "degradation": "degradations", "trainer": "bench.training"}
ENTRY_POINT_GROUPS = {
    "method": "restoration_bench.methods",
    "degradation": "restoration_bench.degradations",
}
_loaded: set[str] = set()


def _register(kind: str, name: str) -> Callable[[T], T]:
    def decorator(cls: T) -> T:
        registry = _REGISTRIES[kind]
        if name in registry and registry[name] is not cls:
            existing = registry[name]
            if _origin(existing) != _origin(cls):  # the same definition re-imported is fine
                raise ValueError(f"{kind} '{name}' is registered twice ({existing} and {cls})")
        cls.name = name
        registry[name] = cls
        return cls

    return decorator


def _origin(obj: Any) -> tuple[Any, Any]:
    """Where a plugin was defined; click commands (trainers) are identified by their callback."""
    target = getattr(obj, "callback", None) or obj
    return getattr(target, "__module__", None), getattr(target, "__qualname__", None)


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator registering a :class:`bench.api.Method` under ``name``."""
    return _register("method", name)


def register_degradation(name: str) -> Callable[[T], T]:
    """Class decorator registering a :class:`bench.api.Degradation` under ``name``."""
    return _register("degradation", name)


def register_trainer(name: str) -> Callable[[T], T]:
    """Register a click command as ``bench train NAME`` (built-in trainers: the modules of ``bench.training``)."""
    return _register("trainer", name)


def unregister(kind: str, name: str) -> None:
    """Remove a registration (for tests)."""
    _REGISTRIES[kind].pop(name, None)


def load_plugins(kind: str) -> None:
    """Import the built-in package and the entry points of ``kind`` once."""
    if kind in _loaded:
        return
    _loaded.add(kind)
    package = _BUILTIN_PACKAGES.get(kind)
    if package:
        importlib.import_module(package)
    group = ENTRY_POINT_GROUPS.get(kind)
    if group:
        for ep in entry_points(group=group):
            try:
                ep.load()
            except Exception as err:  # a broken third-party plugin must not break the tool
                log.warning("could not load %s plugin '%s': %s", kind, ep.name, err)


def available(kind: str) -> dict[str, type]:
    """All registered plugins of ``kind`` (``method``, ``degradation``, ``trainer``)."""
    load_plugins(kind)
    return dict(sorted(_REGISTRIES[kind].items()))


def lookup(kind: str, name: str) -> Any:
    """The class registered as ``name``; unknown names suggest the closest one."""
    registry = available(kind)
    if name not in registry:
        choices = list(registry)
        raise UnknownNameError(
            f"unknown {kind} '{name}'.{suggest(name, choices)} "
            f"Available: {', '.join(choices)} (see `bench list`)."
        )
    return registry[name]


def get_method_class(name: str) -> Any:
    return lookup("method", name)


def get_degradation_class(name: str) -> Any:
    return lookup("degradation", name)


AUTO = re.compile(r"^(?P<sentinel>[^=]*?)\s*=\s*auto\b[:\s]*(?P<what>.*)$")  # "0 = auto: the task's count"


def field_comments(cls: type) -> dict[str, str]:
    """The ``# comment`` at the end of each field line of the dataclass ``cls`` and its dataclass bases: the help
    of a field without ``metadata={"help": ...}`` (:func:`field_help`).

    >>> from bench.solvers.dip import DipFit
    >>> field_comments(DipFit)["precision"]
    '"auto", "float32", "bfloat16" or "float64" (kernel-independent numbers)'
    """
    out: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):  # subclasses win
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # defined in a doctest or a REPL
            continue
        comments = {tok.start[0]: tok.string.lstrip("#").strip()
                    for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
        body = ast.parse(source).body[0]
        for node in getattr(body, "body", []):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.end_lineno in comments:
                out[node.target.id] = comments[node.end_lineno]
    return out


def field_help(params: type) -> dict[str, str]:
    """The help text of each field of the dataclass ``params``: its ``metadata={"help": ...}``, else (for
    fields declared without one) the ``# comment`` at the end of its line (:func:`field_comments`).

    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class P:
    ...     weight: float = field(default=0.1, metadata={"help": "regularisation weight"})
    >>> field_help(P)
    {'weight': 'regularisation weight'}
    """
    out = field_comments(params)
    for f in dataclasses.fields(params):
        text = f.metadata.get("help")
        if text is not None:
            out[f.name] = str(text)
    return out


def describe_parameters(params: type) -> list[str]:
    """One line per parameter of a plugin's ``Params``: name, type (the choices of a ``Literal``), default, and
    its help (:func:`field_help`: the field's ``metadata={"help": ...}``, else its line's comment); a default
    that means "decided per run" reads ``auto: WHAT DECIDES IT`` (``[0 means auto]``).

    >>> import typing
    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class P:
    ...     iterations: int = 0
    ...     net: typing.Literal["auto", "skip"] = "auto"
    ...     lr: float = field(default=0.01, metadata={"help": "Adam's step size"})
    >>> describe_parameters(P)
    ['iterations (int) = 0', 'net (auto | skip) = auto', "lr (float) = 0.01  # Adam's step size"]
    """
    hints = typing.get_type_hints(params)
    comments = field_help(params)
    lines = []
    for f in dataclasses.fields(params):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        kind = hints[f.name]
        if typing.get_origin(kind) is typing.Literal:
            kind_name = " | ".join(map(str, typing.get_args(kind)))
        else:
            kind_name = getattr(kind, "__name__", None) or str(kind).replace("typing.", "")
        comment = comments.get(f.name, "")
        auto = AUTO.match(comment)
        if auto and auto["sentinel"]:  # "0 = auto: ..." on a number: the number stands for auto
            what = auto["what"].strip()
            what = what[1:-1] if what.startswith("(") and what.endswith(")") else what
            value = f"auto{': ' + what if what else ''}  [{auto['sentinel']} means auto]"
        elif default == "auto":
            what = comment.split(":", 1)[1].strip() if comment.startswith("auto:") else comment
            value = f"auto{': ' + what if what else ''}"
        else:
            value = repr(default) + (f"  # {comment}" if comment else "")
        lines.append(f"{f.name} ({kind_name}) = {value}")
    return lines
