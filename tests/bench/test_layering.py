"""The package layout rules (README, ARCHITECTURE), checked by parsing every import statement.

Imports at any depth count (module level and inside functions): ``import x``,
``from x import y`` (``x.y`` when that is a module) and relative imports. Dynamic
imports (``importlib.import_module`` of a name, as the registry does) do not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.codeversion import imported_module, parse_imports

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bench", "methods", "degradations")
PLUGIN_PACKAGES = ("degradations", "methods")
REGISTER_DECORATORS = {"register_method", "register_degradation"}

# Module prefix -> layer (the longest matching prefix wins). A module may import modules of its own
# layer or lower ones; see also the plugin rules in test_layers.
LAYERS = {
    "bench": 0,  # the package __init__: version, environment defaults, the Python API loaded by name on first use
    "bench.errors": 0,
    "bench.draws": 0,
    "bench.params": 0,
    "bench.metric_specs": 0,
    "bench.record": 0,  # the result of one cell: CellRecord, whose fields are the store's columns
    "bench.registry": 1,
    "bench.profiles": 1,
    "bench.images": 1,
    "bench.checkpoints": 1,
    "bench.codeversion": 1,
    "bench.physics": 2,
    "bench.datasets": 2,
    "bench.standard_sets": 2,  # the standard test sets' registry and download (bench.datasets reads them)
    "bench.metrics": 2,
    "bench.metric_bands": 2,
    "bench.api": 3,
    "bench.nets": 3,
    "bench.training": 4,
    "bench.solvers": 4,
    "bench.families": 4,  # base classes several plugins share (dmsp/daep, srflow4x/srflow8x), built on bench.solvers
    "degradations": 5,
    "methods": 5,
    **{f"bench.{name}": 6 for name in ("config", "cells", "compute", "executors", "runner", "store", "selection", "tables", "stats",
                                        "annotations", "report", "plots", "figures", "baseline", "rescore", "bundle",
                                        "bundle_cli", "keycache", "significance", "stored_images", "memory", "cli", "python_api")},
}
HARNESS = 6


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``path:line``; ``name``: the imported name of a ``from`` import (not a
    module); ``bound``: the local name the statement binds to the module (None for imported names)."""

    source: str
    target: str
    name: str | None
    path: Path
    line: int
    bound: str | None = None

    def where(self) -> str:
        return f"{relative(self.path)}:{self.line}"


def relative(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def project_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """``{module name: file}`` of every ``.py`` file of ``packages`` under ``root``."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def import_edges(modules: dict[str, Path]) -> list[Edge]:
    """Every import of a module of ``modules`` by a module of ``modules`` (self-imports left out)."""
    tops = {name.split(".")[0] for name in modules}
    edges = []
    for source, path in modules.items():
        refs = parse_imports(path.read_text(encoding="utf-8"), source, path.name == "__init__.py")
        for ref in refs:
            if ref.module.split(".")[0] not in tops:
                continue
            target = imported_module(ref, modules.__contains__)
            is_name = ref.name is not None and target == ref.module
            if ref.name is None:  # `import a.b` binds a, `import a.b as x` binds x
                bound = ref.alias or ref.module.split(".")[0]
            else:
                bound = None if is_name else ref.alias or ref.name
            if target != source:
                edges.append(Edge(source, target, ref.name if is_name else None, path, ref.line, bound))
    return edges


def find_cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One cycle (as its edges) per strongly connected component with a cycle (Tarjan's algorithm)."""
    graph: dict[str, list[Edge]] = {}
    for edge in edges:
        graph.setdefault(edge.source, []).append(edge)
        graph.setdefault(edge.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for edge in graph[node]:
            if edge.target not in index:
                connect(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [cycle_in(graph, component) for component in components]


def cycle_in(graph: dict[str, list[Edge]], component: set[str]) -> list[Edge]:
    """A shortest cycle through the smallest module of ``component`` (breadth-first)."""
    start = min(component)
    paths: dict[str, list[Edge]] = {start: []}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for edge in graph[node]:
            if edge.target == start:
                return paths[node] + [edge]
            if edge.target in component and edge.target not in paths:
                paths[edge.target] = paths[node] + [edge]
                queue.append(edge.target)
    raise AssertionError(f"no cycle through {start}")


def layer_of(module: str) -> int | None:
    matches = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    return LAYERS[max(matches, key=len)] if matches else None


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def layer_violations(edges: list[Edge]) -> list[str]:
    problems = []
    for e in edges:
        src_top, dst_top = e.source.split(".")[0], e.target.split(".")[0]
        src, dst = layer_of(e.source), layer_of(e.target)
        if src is None or dst is None:
            continue  # reported by test_every_module_has_a_layer
        if src_top == "bench" and dst_top in PLUGIN_PACKAGES:
            rule = "bench may not import the plugin packages (the registry loads them by name)"
        elif src_top in PLUGIN_PACKAGES and dst_top in PLUGIN_PACKAGES:
            rule = ("a plugin may not import another plugin module (the packages load theirs by name); shared code "
                    "belongs in bench.physics, bench.nets or bench.solvers")
        elif src_top in PLUGIN_PACKAGES and dst == HARNESS:
            rule = "plugins may import bench library layers only, not the harness"
        elif dst > src:
            rule = f"upward import (layer {src} -> layer {dst})"
        else:
            continue
        problems.append(f"{e.where()}: {e.source} imports {e.target}: {rule}")
    return problems


def private_uses(modules: dict[str, Path], edges: list[Edge]) -> list[str]:
    """``from m import _name``, imports of ``_module``s from outside their package, and ``module._name``."""
    problems = []
    for e in edges:
        if e.name and is_private(e.name):
            problems.append(f"{e.where()}: {e.source} imports private name {e.name} from {e.target}")
        private = [part for part in e.target.split(".") if is_private(part)]
        if private and e.source != e.target.rpartition(".")[0]:  # only its own package may import it
            problems.append(f"{e.where()}: {e.source} imports private module {e.target}")
    for source, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound = {}  # local name -> project module it refers to
        for e in edges:
            if e.source == source and e.bound:
                bound[e.bound] = e.target if e.bound != e.target.split(".")[0] else e.bound
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and is_private(node.attr):
                chain, value = [], node.value
                while isinstance(value, ast.Attribute):
                    chain.insert(0, value.attr)
                    value = value.value
                if isinstance(value, ast.Name) and value.id in bound:
                    target = ".".join([bound[value.id], *chain])
                    if target in modules and target != source:
                        problems.append(f"{relative(path)}:{node.lineno}: {source} uses private "
                                        f"{target}.{node.attr}")
    return problems


def register_count(tree: ast.AST) -> int:
    count = 0
    for node in ast.walk(tree):
        for deco in getattr(node, "decorator_list", []):
            func = deco.func if isinstance(deco, ast.Call) else deco
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            count += name in REGISTER_DECORATORS
    return count


MODULES = project_modules(ROOT, PACKAGES)
EDGES = import_edges(MODULES)


def test_no_import_cycles():
    cycles = find_cycles(EDGES)
    text = ["import cycle: " + " -> ".join([c[0].source] + [f"{e.target} ({e.where()})" for e in c]) for c in cycles]
    text.append("(one cycle per group of mutually importing modules; function-level imports count)")
    assert not cycles, "\n" + "\n".join(text)


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if layer_of(m) is None)
    assert not missing, f"modules without a layer in LAYERS of {__file__}: {', '.join(missing)}"


def test_layers():
    problems = layer_violations(EDGES)
    assert not problems, "\n" + "\n".join(dict.fromkeys(problems))


def test_imported_project_modules_exist():
    unknown = [f"{e.where()}: {e.source} imports {e.target}, which is not a module of this project"
               for e in EDGES if e.target not in MODULES]
    assert not unknown, "\n" + "\n".join(dict.fromkeys(unknown))


def test_no_private_names_across_modules():
    problems = private_uses(MODULES, EDGES)
    assert not problems, "\n" + "\n".join(dict.fromkeys(problems))


def test_one_registered_plugin_per_file():
    # benchopt's rule: a method or a degradation is one file (files are split by responsibility, not by size)
    problems = []
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" not in path.parts and register_count(ast.parse(path.read_text())) > 1:
                problems.append(f"{relative(path)} registers {register_count(ast.parse(path.read_text()))} plugins")
    assert not problems, "\n" + "\n".join(problems)


# The shared training pipeline: what trainers have in common lives here, so no trainer reads another's internals.
TRAINING_SHARED = ("bench.training", "bench.training.data", "bench.training.loop", "bench.training.splits")


def test_trainers_import_only_the_shared_pipeline():
    problems = [f"{e.where()}: {e.source} imports {e.target} (move what they share into bench/training/data.py)"
                for e in EDGES if e.source.startswith("bench.training.") and e.source not in TRAINING_SHARED
                and e.target.startswith("bench.training.") and e.target not in TRAINING_SHARED]
    assert not problems, "\n" + "\n".join(dict.fromkeys(problems))


# the checker itself ----------------------------------------------------------------------------------------------
def write_package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return project_modules(root, ["pkg"])


def test_parser_edges_cycles_and_private_names(tmp_path):
    modules = write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import os\nimport pkg.b\ndef f():\n    from pkg import c\n",
        "pkg/b.py": "from . import a\nfrom .c import VALUE\n",
        "pkg/c.py": "from pkg.a import _hidden\nimport pkg._impl as impl\nX = impl._secret\n",
        "pkg/_impl.py": "",
        "pkg/sub/__init__.py": "from ._own import thing\nfrom .. import c\n",
        "pkg/sub/_own.py": "",
    })
    edges = import_edges(modules)
    found = {(e.source, e.target, e.name, e.line) for e in edges}
    assert found == {
        ("pkg.a", "pkg.b", None, 2), ("pkg.a", "pkg.c", None, 4),  # function-level; `from pkg import c`: module
        ("pkg.b", "pkg.a", None, 1), ("pkg.b", "pkg.c", "VALUE", 2),  # relative imports resolved
        ("pkg.c", "pkg.a", "_hidden", 1), ("pkg.c", "pkg._impl", None, 2),
        ("pkg.sub", "pkg.sub._own", "thing", 1), ("pkg.sub", "pkg.c", None, 2),
    }
    cycles = find_cycles(edges)
    assert len(cycles) == 1 and [e.source for e in cycles[0]] == ["pkg.a", "pkg.b"]
    assert cycles[0][-1].target == "pkg.a"
    problems = private_uses(modules, edges)
    assert len(problems) == 3, problems
    assert any("private name _hidden" in p for p in problems)
    assert any("private module pkg._impl" in p for p in problems)
    assert any("private pkg._impl._secret" in p for p in problems)
    assert not any("_own" in p for p in problems)  # a package may import its own private modules


def test_layer_rules_on_synthetic_edges():
    def edge(source: str, target: str) -> Edge:
        return Edge(source, target, None, ROOT / "x.py", 1)

    problems = layer_violations([
        edge("bench.api", "bench.cells"), edge("bench.runner", "methods.tv"), edge("methods.tv", "degradations.noise"),
        edge("methods.tv", "bench.report"), edge("methods.tv", "bench.solvers.dip"), edge("bench.cli", "bench.api"),
        edge("methods.srflow8x", "methods.srflow4x"),
    ])
    assert [p.split(": ", 2)[2] for p in problems] == [
        "upward import (layer 3 -> layer 6)",
        "bench may not import the plugin packages (the registry loads them by name)",
        "a plugin may not import another plugin module (the packages load theirs by name); shared code belongs in "
        "bench.physics, bench.nets or bench.solvers",
        "plugins may import bench library layers only, not the harness",
        "a plugin may not import another plugin module (the packages load theirs by name); shared code belongs in "
        "bench.physics, bench.nets or bench.solvers",
    ]
    assert register_count(ast.parse("@register_method('a')\nclass A: pass\n@reg.register_degradation('b')\nclass B: "
                                     "pass\n")) == 2
