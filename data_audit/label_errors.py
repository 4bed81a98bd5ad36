"""Suspected label errors: confident learning (cleanlab) on out-of-sample predicted probabilities.

The probabilities come from k-fold cross-fitting with the project's own training (``cross_fit.py``)
or from a checkpoint on a split it was not trained on. cleanlab's default ``find_label_issues`` on a
weak model flags a large share of the data (issue 9 measured 1,400-1,600 of 4,660 images for 233
real flips, precision 0.11-0.14): every confident mistake of the model counts as an issue. So the
suspects here are ranked by cleanlab's label-quality score and cut at cleanlab's own estimate of how
many issues there are (``num_label_issues``; ``audit.label_errors.num_issues``), on probabilities from
a cross-fit recipe strong enough to be right about most images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from litvision.data_audit.outputs import pyplot, save_figure, write_csv
from litvision.data_audit.section import Section, Table, markdown_table
from litvision.data_audit.sources import AuditData
from litvision.utils.atomic_write import write_atomic
from litvision.utils.errors import ConfigError

log = logging.getLogger(__name__)

COLUMNS = ["id", "given_label", "suggested_label", "quality"]
RANK_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
ESTIMATES = ("off_diagonal", "off_diagonal_calibrated")


def rank_label_issues(labels: np.ndarray, probabilities: np.ndarray, rank_by: str = "self_confidence",
                      num_issues: str | int = "off_diagonal") -> tuple[np.ndarray, np.ndarray]:
    """(positions of the suspects, best suspect first; label quality of every sample)."""
    from cleanlab.count import num_label_issues
    from cleanlab.rank import get_label_quality_scores

    if rank_by not in RANK_METHODS:
        raise ConfigError(f"audit.label_errors.rank_by={rank_by}: use one of {RANK_METHODS}")
    quality = get_label_quality_scores(labels, probabilities, method=rank_by)
    if isinstance(num_issues, str):
        if num_issues not in ESTIMATES:
            raise ConfigError(f"audit.label_errors.num_issues={num_issues}: use one of {ESTIMATES} or an integer")
        count = int(num_label_issues(labels, probabilities, estimation_method=num_issues))
    else:
        count = int(num_issues)
        if count < 0:
            raise ConfigError(f"audit.label_errors.num_issues={num_issues}: must be >= 0")
    order = np.argsort(quality, kind="stable")
    return order[:count], quality


def run_label_errors(data: AuditData, ids: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, out_dir: Path,
                     source: str, rank_by: str, num_issues: str | int, max_rows: int = 64) -> tuple[Section, list[str]]:
    """The section and the suspect ids, best first. Rows with NaN probabilities (unreadable images) are left out."""
    section = Section("label_errors", "Suspected label errors")
    usable = ~np.isnan(probabilities).any(axis=1)
    ids, labels, probabilities = ids[usable], labels[usable], probabilities[usable]
    present = np.unique(labels)
    if len(present) < 2:
        raise ConfigError("label errors need at least 2 classes among the audited images")
    write_atomic(out_dir / "out_of_sample.npz", lambda handle: np.savez(handle, ids=ids, labels=labels, probabilities=probabilities))
    suspects, quality = rank_label_issues(labels, probabilities, rank_by, num_issues)
    names = data.class_names
    suggested = probabilities.argmax(axis=1)
    rows = [[ids[i], names[labels[i]], names[suggested[i]], f"{quality[i]:.6f}"] for i in suspects]
    section.files.append(write_csv(out_dir / "label_issues.csv", COLUMNS, rows))
    accuracy = float((suggested == labels).mean()) if len(labels) else float("nan")
    section.metrics.update({
        "label_errors/num_issues": float(len(suspects)),
        "label_errors/issue_fraction": len(suspects) / max(1, len(labels)),
        "label_errors/out_of_sample_accuracy": accuracy,
    })
    section.markdown += [
        f"Out-of-sample probabilities: {source}; top-1 agreement with the given labels {accuracy:.3f} on "
        f"{len(labels)} images. Ranked by cleanlab's `{rank_by}` label quality (low = suspect); cut at "
        f"{'cleanlab num_label_issues(' + repr(num_issues) + ')' if isinstance(num_issues, str) else 'audit.label_errors.num_issues'}"
        f" = {len(suspects)} suspects ({100 * len(suspects) / max(1, len(labels)):.1f}%). Full list: `label_issues.csv` "
        "(`id,given_label,suggested_label,quality`, best suspects first); every probability: `out_of_sample.npz`. "
        "A suspect is a label to look at, not a proven error.",
        "",
    ]
    shown = [list(row) for row in rows[:max_rows]]
    if shown:
        thumbs = [[data.thumbnail(row[0])] for row in shown]
        section.tables.append(Table("label_issues", COLUMNS, shown, image_columns=["image"], thumbnails=thumbs))
        section.figures.append(_grid(shown, thumbs, out_dir / "label_issues.png"))
        section.markdown += [*markdown_table(COLUMNS, shown[:20]), "", "![suspected label errors](label_issues.png)"]
    return section, [row[0] for row in rows]


def _grid(rows: list[list], thumbs: list[list[np.ndarray]], path: Path, per_row: int = 8) -> Path:
    plt = pyplot()
    lines = (len(rows) + per_row - 1) // per_row
    figure, axes = plt.subplots(lines, per_row, figsize=(per_row * 1.4, lines * 1.7), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (row, (thumb,)) in enumerate(zip(rows, thumbs)):
        ax = axes[k // per_row, k % per_row]
        ax.imshow(thumb)
        ax.set_title(f"{row[0]}\n{row[1]} -> {row[2]}\nq={float(row[3]):.3f}", fontsize=5.5)
    return save_figure(figure, path)
