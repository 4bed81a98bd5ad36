"""The clean-split helper: the ids to drop, in the ``dataset.exclude_ids`` file format.

One id per line, escaped (:mod:`litvision.utils.names`), ``#`` comment lines naming why the ids below
are listed (the format :mod:`litvision.datamodules.sampling.exclusions` reads and writes). Dropped are: the evaluation-side copy of every pair
across source splits (a test image with a near or exact duplicate in train: ciFAIR-style), the later
copies of exact duplicates within a split (they could land on both sides of the val hold-out), and
the suspected label errors.
"""

from __future__ import annotations

from pathlib import Path

from litvision.data_audit.duplicates import Pair
from litvision.data_audit.sources import AuditData
from litvision.datamodules.sampling.exclusions import id_list_text
from litvision.utils.atomic_write import write_text_atomic

FILE_NAME = "exclude_ids.txt"


def exclusion_groups(data: AuditData, pairs: list[Pair], suspects: list[str]) -> list[tuple[str, list[str]]]:
    """[(reason, ids)] in the order written; an id appears once, under its first reason."""
    split_of = {}
    for pair in pairs:
        for sample_id in (pair.a, pair.b):
            if sample_id not in split_of:
                split_of[sample_id] = data.locate(sample_id)[0].name
    cross = [p.b for p in pairs if split_of[p.a] != split_of[p.b]]
    within = [p.b for p in pairs if split_of[p.a] == split_of[p.b]]
    groups = [
        (
            "copies (exact or near) of an image in an earlier source split: the evaluation-side member of each pair",
            cross,
        ),
        ("later copies of exact duplicates within a source split", within),
        ("suspected label errors (label_issues.csv)", list(suspects)),
    ]
    seen: set[str] = set()
    out = []
    for reason, ids in groups:
        fresh = [i for i in dict.fromkeys(ids) if i not in seen]
        seen.update(fresh)
        out.append((reason, fresh))
    return out


def write_exclusions(path: Path, groups: list[tuple[str, list[str]]]) -> Path:
    header: tuple[str, list[str]] = (
        "audit.py: sample ids to drop for a clean split; train on it with dataset.exclude_ids=" + str(path),
        [],
    )
    write_text_atomic(path, id_list_text([header, *((f"{reason}: {len(ids)}", ids) for reason, ids in groups)]))
    return path
