"""``dataset.exclude_ids=PATH``: leave listed samples out of every split (a ciFAIR-style clean split).

The file is what ``audit.py audit.write_exclusions=true`` writes, and easy to write by hand:
UTF-8 text, one sample id per line; blank lines and lines starting with ``#`` are ignored,
surrounding whitespace is stripped. Each id is written as :func:`litvision.utils.names.escape_name`
makes it (a backslash is ``\\\\``, a byte that is not UTF-8 ``\\xNN``; a tab, a newline, a leading
``#`` or space are escaped too), so every name a file can have survives the trip, and an id copied
from ``predictions.csv`` or any other file litvision writes selects the same file. Ids are the ones
every litvision tool uses:

- CIFAR: ``train/<n>`` / ``test/<n>``, n = position in the official file order of that
  source split (``data_batch_1..5`` concatenated; ``test_batch``);
- file datasets (ImageNet, class folders): the path relative to ``dataset.data_dir``,
  with ``/`` separators (``train/n01440764/n01440764_10026.JPEG``).

The ids are removed from the *source* splits, before the validation hold-out is carved, so
a train id can reach neither train nor val.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from litvision.utils.errors import DataError, MissingDataError
from litvision.utils.names import escape_name, unescape_name

log = logging.getLogger(__name__)

# Columns of our CSVs (audit, predictions): passing one of those instead of the exclusion list is the
# likely mistake, so it gets its own message.
_CSV_HEADER_FIELDS = {
    "id",
    "a",
    "b",
    "kind",
    "distance",
    "given_label",
    "suggested_label",
    "quality",
    "pred",
    "prob_top1",
    "label",
    "split",
    "issue",
    "detail",
    "class",
    "count",
    "our_split_a",
    "our_split_b",
}


def read_exclusion_file(path: str | Path) -> list[str]:
    """The ids listed in ``path`` (order kept, duplicates dropped); a clear error if it is malformed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError(
            f"dataset.exclude_ids={path}: no such file (write one id per line, or drop the override)"
        )
    raw = path.read_bytes()
    if b"\0" in raw:
        raise DataError(f"dataset.exclude_ids={path}: binary file; expected UTF-8 text with one sample id per line")
    try:
        text = raw.decode("utf-8-sig")  # tolerate a BOM from Windows editors
    except UnicodeDecodeError as e:
        raise DataError(
            f"dataset.exclude_ids={path}: not UTF-8 text ({e}); expected one sample id per line "
            "(a byte of a name that is not UTF-8 is written \\xNN)"
        ) from e
    return parse_id_list(text, f"dataset.exclude_ids={path}")


def parse_id_list(text: str, source: str = "id list") -> list[str]:
    """The ids of an id-list text (order kept, duplicates dropped); one DataError naming the line if malformed."""
    ids: dict[str, None] = {}
    # "\n" only: a name's other line breaks (\x0b, \u2028, ...) are escaped, never split on
    for number, line in enumerate(text.split("\n"), start=1):
        try:
            sample_id = parse_id_line(line, first=not ids)
        except DataError as e:
            raise DataError(f"{source}, line {number}: {e}") from None
        if sample_id is not None:
            ids.setdefault(sample_id)
    return list(ids)


def parse_id_line(line: str, first: bool = False) -> str | None:
    """The id on one line (None for a blank or ``#`` comment line); a DataError saying what is wrong."""
    written = line.strip()
    if not written or written.startswith("#"):
        return None
    if first and _looks_like_csv_header(written):
        raise DataError(
            f"{written!r} looks like a CSV header; the file must list one sample id per line "
            "(audit.write_exclusions=true writes it)"
        )
    if "\t" in written:
        raise DataError(
            f"{written!r} contains a tab; write one sample id per line, nothing else on it "
            "(a tab in a name is written \\x09)"
        )
    sample_id = unescape_name(written)
    if sample_id.startswith(("/", "../")) or posixpath.normpath(sample_id) != sample_id:
        raise DataError(
            f"{written!r} is not a normalised relative id (expected e.g. train/123 or "
            "train/<class>/<file>, relative to dataset.data_dir)"
        )
    return sample_id


def _looks_like_csv_header(line: str) -> bool:
    """Every field a column name of our CSVs (predictions.csv's ``top<k>`` too)."""
    fields = [f.strip() for f in line.split(",")]
    return len(fields) > 1 and all(f in _CSV_HEADER_FIELDS or re.fullmatch(r"top\d+", f) for f in fields)


def id_list_text(groups: Iterable[tuple[str, Iterable[str]]]) -> str:
    """An id list (what :func:`read_exclusion_file` reads): per group a ``# <comment>`` line, then its ids."""
    lines: list[str] = []
    first = True
    for comment, ids in groups:
        lines.append(f"# {escape_name(comment)}")
        for sample_id in ids:
            lines.append(_not_a_header(escape_name(sample_id)) if first else escape_name(sample_id))
            first = False
    return "\n".join(lines) + "\n"


def _not_a_header(written: str) -> str:
    """The first id of a list, its commas escaped if it would read as a CSV header (an id such as ``a,b``)."""
    return written.replace(",", "\\x2c") if _looks_like_csv_header(written) else written


class Exclusions:
    """The ids to leave out, and which of them matched a sample (to warn about the rest)."""

    def __init__(self, ids: Iterable[str], source: str = "") -> None:
        self.ids = np.asarray(list(ids), dtype=str)
        self.source = source
        self.matched: set[str] = set()
        self.searched: list[str] = []  # source splits the ids were matched against

    @classmethod
    def from_file(cls, path: str | Path) -> Exclusions:
        ids = read_exclusion_file(path)
        if not ids:
            log.warning("dataset.exclude_ids=%s lists no ids: nothing is excluded", path)
        return cls(ids, str(path))

    def keep_mask(self, sample_ids: np.ndarray) -> np.ndarray:
        """True for the samples not listed; remembers which listed ids were seen."""
        sample_ids = np.asarray(sample_ids, dtype=str)
        if len(self.ids) == 0 or len(sample_ids) == 0:
            return np.ones(len(sample_ids), dtype=bool)
        drop = np.isin(sample_ids, self.ids)
        self.matched.update(sample_ids[drop].tolist())
        return ~drop

    def apply(self, dataset, split: str):
        """``dataset`` without the listed samples (same type: anything with ``ids`` and ``subset``)."""
        keep = self.keep_mask(dataset.ids)
        if split not in self.searched:
            self.searched.append(split)
        removed = int((~keep).sum())
        log.info("dataset.exclude_ids: removed %d of %d samples from source split %r", removed, len(keep), split)
        return dataset if removed == 0 else dataset.subset(np.flatnonzero(keep))

    def unmatched(self) -> list[str]:
        return [i for i in self.ids.tolist() if i not in self.matched]

    def warn_unmatched(self) -> None:
        missing = self.unmatched()
        if missing:
            log.warning(
                "dataset.exclude_ids=%s: %d of %d ids match no sample of the source splits this run "
                "uses %s (e.g. %s); ids are relative to dataset.data_dir (CIFAR: train/<n>, test/<n>)",
                self.source,
                len(missing),
                len(self.ids),
                self.searched,
                ", ".join(map(escape_name, missing[:5])),
            )
