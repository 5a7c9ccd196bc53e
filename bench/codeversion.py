"""Automatic code versions: a plugin's cache key follows every project file it runs.

:func:`code_version` hashes the source of the plugin's module and, transitively,
of every *project* module it imports (module-level and function-level
``import`` statements, parsed with :mod:`ast`; ``from pkg import name`` counts
as the submodule ``pkg.name`` when that is a module; a module's parent packages
count too, since importing it runs their ``__init__``), plus the plugin class's
``version`` attribute (a hash of its packaged weights). Project modules are
those of the ``bench``, ``methods`` and ``degradations`` packages and of the
plugin's own top-level package, so third-party plugins are covered as well.
Editing any of those files changes the version, hence the cache keys of the
plugin's cells; nothing has to be declared by hand. Parsed files are memoised
by (path, mtime, size), so repeated calls only stat the files.

Example:
    >>> from bench.api import Method
    >>> class Demo(Method):
    ...     version = "weights-1"
    >>> len(code_version(Demo)), code_version(Demo) == code_version(Demo)
    (16, True)
    >>> [r.module for r in parse_imports("from bench import api\\ndef f():\\n    import torch", "x")]
    ['bench', 'torch']
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

PROJECT_PACKAGES = ("bench", "methods", "degradations")


@dataclass(frozen=True)
class ImportRef:
    """One imported name: ``import module`` (``name`` None) or ``from module import name`` (``as alias``).

    Example:
        >>> ImportRef("bench.api", "Method", 3).module
        'bench.api'
    """

    module: str  # absolute module name (relative imports resolved)
    name: str | None
    line: int
    alias: str | None = None


def parse_imports(source: str, module: str, is_package: bool = False) -> list[ImportRef]:
    """Every import statement of ``source`` (module ``module``), at any depth, in source order.

    >>> [(r.module, r.name) for r in parse_imports("from .b import c\\nfrom . import d", "p.a")]
    [('p.b', 'c'), ('p', 'd')]
    """
    package = module if is_package else module.rpartition(".")[0]
    refs = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            refs += [ImportRef(alias.name, None, node.lineno, alias.asname) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            refs += [ImportRef(base, alias.name, node.lineno, alias.asname) for alias in node.names]
    return sorted(refs, key=lambda r: r.line)


def imported_module(ref: ImportRef, is_module: Callable[[str], bool]) -> str:
    """The module ``ref`` loads: ``pkg.name`` for ``from pkg import name`` when that is a module, else ``pkg``.

    >>> imported_module(ImportRef("bench", "api", 1), lambda name: name == "bench.api")
    'bench.api'
    """
    if ref.name and ref.name != "*" and is_module(f"{ref.module}.{ref.name}"):
        return f"{ref.module}.{ref.name}"
    return ref.module


def parents(module: str) -> list[str]:
    """Enclosing packages, outermost first: ``a.b.c`` -> ``["a", "a.b"]``.

    >>> parents("a.b.c")
    ['a', 'a.b']
    """
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def module_file(name: str) -> Path | None:
    """The ``.py`` source of module ``name`` without importing it (None: not found or no source)."""
    loaded = getattr(sys.modules.get(name), "__file__", None)
    if loaded and loaded.endswith(".py") and os.path.isfile(loaded):
        return Path(loaded)
    top, *rest = name.split(".")
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: nothing is imported
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    folders = [Path(p) for p in spec.submodule_search_locations or ()]
    for part in rest[:-1]:
        folders = [f / part for f in folders if (f / part).is_dir()]
    for folder in folders:
        for candidate in (folder / rest[-1] / "__init__.py", folder / f"{rest[-1]}.py"):
            if candidate.is_file():
                return candidate
    return None


_PARSED: dict[tuple[str, int, int], tuple[str, tuple[ImportRef, ...]]] = {}


def file_info(path: Path, module: str) -> tuple[str, tuple[ImportRef, ...]]:
    """(sha256 of the file, its imports), memoised by (path, mtime, size)."""
    stat = os.stat(path)
    memo = (str(path), stat.st_mtime_ns, stat.st_size)
    if memo not in _PARSED:
        data = path.read_bytes()
        try:
            refs = tuple(parse_imports(data.decode("utf-8"), module, path.name == "__init__.py"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            refs = ()  # the plugin will fail to import anyway; its bytes still count
        _PARSED[memo] = (hashlib.sha256(data).hexdigest(), refs)
    return _PARSED[memo]


def module_closure(root: str, packages: Iterable[str]) -> dict[str, str]:
    """``{module: sha256 of its source}`` of ``root`` and every module of ``packages`` it imports, transitively.

    A module without a source file (e.g. defined in a doctest) counts by its name (an empty hash).
    """
    tops = set(packages)

    def is_module(name: str) -> bool:
        return module_file(name) is not None

    out: dict[str, str] = {}
    todo = [root, *parents(root)]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        path = module_file(name)
        if path is None:
            out[name] = ""
            continue
        out[name], refs = file_info(path, name)
        for ref in refs:
            if ref.module.split(".")[0] in tops:
                target = imported_module(ref, is_module)
                todo += [m for m in (target, *parents(target)) if m not in out]
    return out


def code_version(cls: type) -> str:
    """16 hex digits over ``cls.version`` and the sources of the project modules the plugin runs."""
    h = hashlib.sha256(str(cls.version).encode())
    module = cls.__module__
    for name, digest in sorted(module_closure(module, (*PROJECT_PACKAGES, module.split(".")[0])).items()):
        h.update(f"\n{name} {digest}".encode())
    return h.hexdigest()[:16]
