"""MkDocs hooks (mkdocs.yml ``hooks:``) for the documentation site.

The docstrings use Sphinx roles (``:class:`Queue```, ``:meth:`Job.cancel```), which Markdown renders as
the role's name followed by code. On the API reference pages, keep the code and drop the role (a leading
``~`` shortens a dotted name to its last part, as Sphinx does).
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|exc|data|obj|const):<code>(~?)([^<]+)</code>")


def _code(match: re.Match[str]) -> str:
    name = match.group(2)
    if match.group(1):
        name = name.rsplit(".", 1)[-1]
    return f"<code>{name}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(_code, html)
