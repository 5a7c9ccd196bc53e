"""The documentation site: every page is reachable from the nav, README's links resolve, doctests render as code.

`mkdocs build --strict` itself runs in CI (`.ci/run`) and `tox -e docs`; these tests catch the same kinds of
breakage without the docs extra installed.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def nav_pages() -> set[str]:
    """The Markdown files ``mkdocs.yml``'s nav names (``Title: page.md`` entries)."""
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text.split("\nnav:\n", 1)[1].split("\nmarkdown_extensions:", 1)[0]
    return set(re.findall(r":\s*([\w/\-]+\.md)\s*$", nav, flags=re.M))


def anchors(page: Path) -> set[str]:
    """The heading ids MkDocs' ``toc`` gives ``page``'s headings (punctuation dropped, lower case, runs of spaces and
    hyphens → one -)."""
    out = set()
    for line in page.read_text().splitlines():
        if m := re.match(r"#{1,6} (.*)", line):
            out.add(re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", m.group(1)).strip().lower()))
    return out


def test_every_page_is_in_the_nav():
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    nav = nav_pages()
    assert not pages - nav, f"docs pages missing from mkdocs.yml's nav: {sorted(pages - nav)}"
    assert not nav - pages, f"mkdocs.yml's nav names missing pages: {sorted(nav - pages)}"


@pytest.mark.parametrize("source", ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in DOCS.rglob("*.md"))])
def test_relative_links_resolve(source):
    page = ROOT / source
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading '{anchor}' in {file.relative_to(ROOT)}")
    assert not broken, f"{source}: " + "; ".join(broken)


def load_extension():
    pytest.importorskip("griffe", reason="the docs extra (pip install -e '.[docs]') is not installed")
    spec = importlib.util.spec_from_file_location("griffe_doctests", DOCS / "griffe_doctests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_doctests_become_code_blocks():
    ext = load_extension()
    text = "Intro.\n\n    >>> x = [1]\n    >>> x\n    [1]\n\nAfter :func:`bench.run` and :class:`~bench.api.Method`."
    fenced = ext.fence_doctests(text)
    assert fenced.split("\n")[2:7] == ["", "```pycon", ">>> x = [1]", ">>> x", "[1]"]
    assert fenced.count("```") == 2 and fenced.endswith(":class:`~bench.api.Method`.")
    assert ext.SPHINX_ROLE.sub(r"`\1`", text).endswith("After `bench.run` and `bench.api.Method`.")
