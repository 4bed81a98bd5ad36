"""Writing the audit's files: CSVs and figures, atomically (a crash never leaves half a file)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from litvision.utils.atomic_write import write_atomic, write_text_atomic
from litvision.utils.names import csv_text


def write_csv(path: Path, columns: list[str], rows: Iterable[Iterable[Any]]) -> Path:
    """Ids and names escaped, text guarded against spreadsheet formulas (:func:`litvision.utils.names.csv_cell`)."""
    write_text_atomic(path, csv_text(columns, rows))
    return path


def save_figure(figure: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG and close it."""
    import matplotlib.pyplot as plt

    write_atomic(path, lambda handle: figure.savefig(handle, format="png", dpi=110, bbox_inches="tight"))
    plt.close(figure)
    return path


def pyplot():
    """matplotlib.pyplot on the file-only backend (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
