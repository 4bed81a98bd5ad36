"""``report.md``: the findings of every section, warnings first, figures beside it."""

from __future__ import annotations

from pathlib import Path

from litvision.data_audit.section import Section
from litvision.data_audit.sources import AuditData
from litvision.utils.atomic_write import write_text_atomic
from litvision.utils.names import escape_name, escape_surrogates


def write_report(path: Path, data: AuditData, sections: list[Section], exclusions: Path | None = None) -> Path:
    dm = data.datamodule
    lines = [
        "# Data audit",
        "",
        f"Dataset: `{type(dm).__name__}` at `{escape_name(str(getattr(dm, 'data_dir', '?')))}`, {len(data.class_names)} classes. "
        "Source splits (before any hold-out): "
        + ", ".join(f"`{name}` {len(split)} images" for name, split in data.splits.items())
        + ". Sample ids: `train/<n>` / `test/<n>` for CIFAR (position in the official files), the path under "
        "`dataset.data_dir` for file datasets.",
        "",
    ]
    warnings = [w for section in sections for w in section.warnings]
    if warnings:
        lines += ["## Warnings", "", *[f"- {w}" for w in warnings], ""]
    for section in sections:
        lines += [f"## {section.title}", "", *section.markdown, ""]
        if section.files:
            lines += ["Files: " + ", ".join(f"`{f.name}`" for f in section.files), ""]
    if exclusions is not None:
        lines += [
            "## Clean split",
            "",
            f"`{exclusions.name}` lists the ids to drop; train and evaluate without them with "
            f"`dataset.exclude_ids={exclusions}`.",
            "",
        ]
    # ids and names are escaped where the sections write them; this keeps any other text a file name
    # brought in (an error message with a path) from failing the whole report
    write_text_atomic(path, escape_surrogates("\n".join(lines)))
    return path
