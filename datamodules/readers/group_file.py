"""Group files: ``id,group[,group2,...]`` CSV rows naming each sample's group(s), for per-group metrics.

``id`` is a sample id as litvision writes it (``predictions.csv``, ``dataset.exclude_ids``):
CIFAR ``train/<n>``/``test/<n>``, file datasets the path relative to ``dataset.data_dir``
(``train/cat/0001.jpg``). Every further column is one way of grouping the samples (e.g.
``hair,gender``); an empty cell leaves that sample out of that column's groups. The file is
data: read with :mod:`csv`, never evaluated.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from litvision.utils.errors import DataError, MissingDataError


@dataclass(frozen=True)
class GroupTable:
    """The groups of a file: ``columns``, each with its sorted ``names``, and ``rows`` id -> group per column."""

    path: str
    columns: list[str]
    names: list[list[str]]
    rows: dict[str, tuple[str, ...]]

    @property
    def num_groups(self) -> int:
        return sum(len(names) for names in self.names)

    def codes_for(self, ids: np.ndarray) -> np.ndarray:
        """(N, columns) int64 global group indices of ``ids`` (column offsets added), -1 for none."""
        offsets = np.cumsum([0] + [len(n) for n in self.names[:-1]])
        lookup = [
            {name: offset + g for g, name in enumerate(names)}
            for offset, names in zip(offsets, self.names, strict=True)
        ]
        codes = np.full((len(ids), len(self.columns)), -1, dtype=np.int64)
        for i, sample in enumerate(np.asarray(ids).tolist()):
            row = self.rows.get(sample)
            if row is not None:
                for j, value in enumerate(row):
                    if value:
                        codes[i, j] = lookup[j][value]
        return codes


def read_group_file(path: str | os.PathLike) -> GroupTable:
    """Read and check a group file: a header ``id,<column>...``, one row per id (repeats must agree)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError(f"groups={path}: no such file (a CSV of id,group[,group2...]; docs/robustness.md)")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or header[0].strip() != "id" or len(header) < 2:
            raise DataError(f"groups={path}: the first line must be the header id,<group column>[,...]; got {header}")
        columns = [name.strip() for name in header[1:]]
        if len(set(columns)) != len(columns) or not all(columns):
            raise DataError(f"groups={path}: group column names must be distinct and non-empty, got {columns}")
        rows: dict[str, tuple[str, ...]] = {}
        for line, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(header):
                raise DataError(f"groups={path}:{line}: {len(row)} fields for the {len(header)} columns {header}")
            sample, values = row[0].strip(), tuple(v.strip() for v in row[1:])
            if rows.setdefault(sample, values) != values:
                raise DataError(f"groups={path}:{line}: {sample} is in groups {values} here and {rows[sample]} above")
    if not rows:
        raise DataError(f"groups={path}: no rows after the header")
    names = [sorted({row[j] for row in rows.values() if row[j]}) for j in range(len(columns))]
    return GroupTable(str(path), columns, names, rows)
