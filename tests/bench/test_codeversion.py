"""Code versions follow every project file a plugin imports, so editing any of them invalidates its cells."""

from __future__ import annotations

import importlib
import os
import sys
import uuid

import numpy as np
import pytest

from bench.cells import Cell, PluginInstance, file_digests, instantiate
from bench.codeversion import code_version, module_closure, parse_imports
from bench.datasets import ImageItem

PLUGIN = """\
from dataclasses import dataclass

from bench.api import Method
from {pkg}.helper1 import scale


class Plug(Method):
    '''Scales the observation.'''

    version = "{version}"

    @dataclass
    class Params:
        gain: float = 1.0

    def restore(self, obs, ctx):
        return obs.y * scale()
"""
HELPER1 = """\
def scale():
    from {pkg} import helper2  # function-level, and `from package import module`

    return helper2.SCALE
"""


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    """A third-party package ``cvplug_<random>``: plugin -> helper1 -> helper2, plus an unrelated module."""
    pkg = f"cvplug_{uuid.uuid4().hex[:10]}"  # a fresh name: no stale module or finder caches
    root = tmp_path / pkg
    root.mkdir()
    files = {
        "__init__.py": "",
        "plugin.py": PLUGIN.format(pkg=pkg, version="w1"),
        "helper1.py": HELPER1.format(pkg=pkg),
        "helper2.py": "SCALE = 1.0\n",
        "unrelated.py": "VALUE = 1\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield pkg, root
    for name in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
        del sys.modules[name]


def edit(path, text):
    """Rewrite a file so that its size and mtime both change (the memo key)."""
    before = path.stat()
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def cell_key(cls) -> str:
    """The cache key of one cell of ``cls``, built as the runner builds it."""
    params = cls.Params()
    values = {"gain": params.gain}
    method = PluginInstance("method", "plug", cls(params), values, "plug", code_version(cls), file_digests(values))
    noise = instantiate("degradation", "noise", {}, "smoke")[0]
    image = ImageItem("flat", np.full((8, 8, 3), 0.5, np.float32))
    return Cell.make(method, noise, image, 0, "smoke", "builtin").key


def test_editing_a_transitively_imported_file_changes_the_cache_key(plugin_package):
    pkg, root = plugin_package
    cls = importlib.import_module(f"{pkg}.plugin").Plug
    version, key = code_version(cls), cell_key(cls)
    assert (version, key) == (code_version(cls), cell_key(cls))  # stable

    edit(root / "unrelated.py", "VALUE = 2  # not imported by the plugin\n")
    assert (code_version(cls), cell_key(cls)) == (version, key)

    edit(root / "helper2.py", "SCALE = 2.0  # edited\n")
    assert code_version(cls) != version
    assert cell_key(cls) != key


def test_closure_covers_the_plugin_package_and_bench(plugin_package):
    pkg, _ = plugin_package
    closure = module_closure(f"{pkg}.plugin", ("bench", "methods", "degradations", pkg))
    assert {f"{pkg}.plugin", f"{pkg}.helper1", f"{pkg}.helper2", pkg, "bench", "bench.api"} <= set(closure)
    assert f"{pkg}.unrelated" not in closure
    assert not any(name.startswith(("torch", "numpy", "dataclasses")) for name in closure)


def test_weights_version_still_counts(plugin_package):
    pkg, root = plugin_package
    first = code_version(importlib.import_module(f"{pkg}.plugin").Plug)
    edit(root / "plugin.py", PLUGIN.format(pkg=pkg, version="w2"))
    del sys.modules[f"{pkg}.plugin"]
    second = importlib.import_module(f"{pkg}.plugin").Plug
    assert second.version == "w2" and code_version(second) != first


def test_builtin_plugins_follow_their_shared_modules():
    """A built-in plugin's closure holds the bench modules it runs (no hand-written lists)."""
    tv = instantiate("method", "tv", {}, "smoke")[0]
    closure = module_closure(type(tv.plugin).__module__, ("bench", "methods", "degradations"))
    assert "bench.api" in closure and "methods.tv" in closure
    assert all(name.split(".")[0] in {"bench", "methods", "degradations"} for name in closure)
    assert tv.version == code_version(type(tv.plugin))


def test_parse_imports_finds_nested_and_relative_imports():
    source = "import a.b as c\nclass K:\n    def f(self):\n        from .. import d\n        from .e import (f, g)\n"
    refs = parse_imports(source, "p.q.r")
    assert [(r.module, r.name, r.line, r.alias) for r in refs] == [
        ("a.b", None, 1, "c"), ("p", "d", 4, None), ("p.q.e", "f", 5, None), ("p.q.e", "g", 5, None)]
