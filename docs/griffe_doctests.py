"""A griffe extension for the API reference: doctest examples become ``pycon`` code blocks.

The project's docstrings hold runnable examples (``>>>`` lines, run by pytest's ``--doctest-modules``) without a
Google-style ``Examples:`` heading. Markdown would read ``>>>`` as nested block quotes and ``[a]`` ``[b]`` on
consecutive lines as a reference link, so each run of example lines (prompt, continuation and output lines up to
the next blank line) is fenced as code before mkdocstrings renders the docstring; Sphinx roles become code spans.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    """``text`` with every block of ``>>>`` lines (and their output) wrapped in a ```` ```pycon ```` fence."""
    out: list[str] = []
    block: list[str] = []
    for line in text.split("\n") + [""]:
        if block and line.strip():
            block.append(line)
            continue
        if block:
            out += ["", "```pycon", *textwrap.dedent("\n".join(block)).split("\n"), "```", ""]
            block = []
        if line.lstrip().startswith(">>>"):
            block.append(line)
        else:
            out.append(line)
    return "\n".join(out[:-1])


# Sphinx roles (:func:`name`, :class:`~pkg.Name`) read as plain code in Markdown.
SPHINX_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):`~?([^`]+)`")


class FenceDoctests(griffe.Extension):
    """Fences doctest examples and turns Sphinx roles into code spans in every docstring griffe loads."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        text = SPHINX_ROLE.sub(r"`\1`", obj.docstring.value)
        obj.docstring.value = fence_doctests(text) if ">>>" in text else text
