"""What every audit section hands to the report and to W&B."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from litvision.utils.names import escape_name


@dataclass
class Table:
    """Rows for the report and a W&B table; ``thumbnails[i]`` are row i's images (W&B image columns)."""

    name: str
    columns: list[str]
    rows: list[list[Any]]
    image_columns: list[str] = field(default_factory=list)
    thumbnails: list[list[np.ndarray]] = field(default_factory=list)


@dataclass
class Section:
    """One section's findings: Markdown lines, the files it wrote, tables, figures, summary numbers."""

    name: str
    title: str
    markdown: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def markdown_table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    """A GitHub Markdown table (ids and names escaped as everywhere, :mod:`litvision.utils.names`; ``|`` too)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            value = f"{value:.4g}"
        return escape_name(str(value)).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines
