"""MkDocs hook: Sphinx roles in docstrings (``:class:`~pkg.mod.Name` ``) render as plain code.

The docstrings are written for readers of the source and use Sphinx's roles; mkdocstrings (Markdown)
would print the role name before the code (":class:Name"). The site shows the code alone, and a
leading ``~`` shortens the path to its last part, as Sphinx does. The docstrings stay as they are.
"""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:py:)?(?:class|mod|func|meth|attr|obj|exc|data|const):<code>(~?)([^<]*)</code>")


def _code(match: re.Match) -> str:
    short, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html: str, **_: object) -> str:
    return ROLE.sub(_code, html)
