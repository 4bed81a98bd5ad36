"""MkDocs hook: ``\\|`` inside a code span of a table row renders as ``|``, as on GitHub.

GitHub's tables need a pipe inside a code span escaped (`` `a\\|b` ``), and then show it without
the backslash; Python-Markdown's tables take the pipe in a code span as is and would show the
backslash. The pages are written for GitHub (they are read there too), so the site drops it.
"""

from __future__ import annotations

import re

CODE_SPAN = re.compile(r"`[^`\n]*`")


def on_page_markdown(markdown: str, **_: object) -> str:
    return "\n".join(
        CODE_SPAN.sub(lambda m: m.group(0).replace("\\|", "|"), line) if line.lstrip().startswith("|") else line
        for line in markdown.split("\n")
    )
