"""Group files: ``id,group[,group2,...]`` CSV rows naming each sample's group(s), for per-group metrics.

``id`` is a sample id as litvision writes it (``predictions.csv``, ``dataset.exclude_ids``):
CIFAR ``train/<n>``/``test/<n>``, file datasets the path relative to ``dataset.data_dir``
(``train/cat/0001.jpg``). Every further column is one way of grouping the samples (e.g.
``hair,gender``); an empty cell leaves that sample out of that column's groups. The file is
data: read with :mod:`csv`, never evaluated.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from litvision.utils.atomic_write import write_text_atomic
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


def groups_from_ids(ids: list[str], level: int | None = None, pattern: str | None = None) -> list[tuple[str, str]]:
    """``(id, group)`` rows for sample ids: the ``level``-th ``/``-separated part of each id (0 = the first,
    e.g. ``train/<class>/<group>/x.jpg`` -> level 2), or the first capture group of the regex ``pattern``
    searched in the id (e.g. ``_(day|night)\\.``); an id it does not match gets no group."""
    if (level is None) == (pattern is None):
        raise DataError("groups from file names: give exactly one of level=K or pattern=REGEX")
    regex = re.compile(pattern) if pattern is not None else None
    rows = []
    for sample in ids:
        if regex is not None:
            found = regex.search(sample)
            group = (found.group(1) if found.groups() else found.group(0)) if found else ""
        else:
            assert level is not None  # exactly one of level/pattern, checked above
            parts = sample.split("/")
            group = parts[level] if -len(parts) <= level < len(parts) - 1 else ""  # never the file name itself
        rows.append((sample, group))
    return rows


def write_group_file(
    path: str | os.PathLike, rows: Sequence[tuple[str, ...]], columns: tuple[str, ...] = ("group",)
) -> None:
    """Write ``id,<columns>`` rows atomically (a group file :func:`read_group_file` reads)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("id", *columns))
    writer.writerows(rows)
    write_text_atomic(Path(path), buffer.getvalue())


def main(argv: list[str] | None = None) -> None:
    """``python -m litvision.datamodules.readers.group_file DATA_DIR --level K|--pattern REGEX --out groups.csv``:
    a group file for the images under DATA_DIR (ids = paths relative to it, as class folders name samples)."""
    import argparse

    from litvision.datamodules.readers.file_index import IMAGE_EXTENSIONS

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("data_dir")
    parser.add_argument("--out", required=True)
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--level", type=int, help="which /-separated part of the id is the group (0 = first)")
    choice.add_argument("--pattern", help="a regex searched in the id; its first capture group is the group")
    args = parser.parse_args(argv)
    root = Path(args.data_dir).expanduser()
    ids = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(s.startswith(".") for s in p.relative_to(root).parts)
    )
    rows = groups_from_ids(ids, args.level, args.pattern)
    write_group_file(args.out, rows)
    grouped = sum(1 for _, group in rows if group)
    print(f"wrote {args.out}: {len(rows)} images, {grouped} with a group, {len({g for _, g in rows if g})} groups")


if __name__ == "__main__":
    main()
