"""Suspected label errors: confident learning (cleanlab) on out-of-sample predicted probabilities.

The probabilities come from k-fold cross-fitting with the project's own training (``cross_fit.py``),
from a checkpoint on a split it was not trained on, or from a k-fold logistic regression on a frozen
backbone's features (``audit.label_errors.method=features``, :mod:`~litvision.data_audit.feature_probabilities`). The suspects are the images ranked lowest by
cleanlab's label-quality score (``rank_by``), cut at an estimate of how many labels are wrong
(``num_issues``):

- ``off_diagonal`` / ``off_diagonal_calibrated``: cleanlab's ``num_label_issues``. It counts every
  image the model confidently gives another class, so the model's own mistakes count as label issues:
  right for a strong model, far too many for the models a CPU trains from scratch on a few thousand
  images (issue 9: 1,400-1,600 of 4,660 for 233 flips at 0.51 accuracy; measured here at 0.64
  accuracy: 253 suspects for 73 flips, precision 0.22).
- ``mixture`` (default): a mixture-proportion estimate, written here because cleanlab has none. For an
  image the model has not seen, the probability it gives a class the image does NOT belong to has a
  distribution we can read off every image's other classes; a wrong label drawn among those classes
  has that same distribution, a right one sits far above it. Below a threshold t where a right label
  rarely falls, the share of images whose given label scores below t is about (share of wrong labels)
  x (share of other-class scores below t), so the ratio of the two estimates the share of wrong labels
  (Blanchard et al. 2016; Scott 2015). The ratio is taken at thresholds holding 20-60% of the
  other-class scores (enough images for a stable count, few right labels) and the smallest is kept.
  It assumes wrong labels look like other classes in general; labels swapped between look-alike
  classes (cat/dog) score higher, so they are undercounted: the cut then errs towards precision.
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
from litvision.utils.names import escape_name
from litvision.utils.optional import require

log = logging.getLogger(__name__)

COLUMNS = ["id", "given_label", "suggested_label", "quality"]
RANK_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
ESTIMATES = ("mixture", "off_diagonal", "off_diagonal_calibrated")
# shares of the other-class scores below the thresholds the mixture estimate is read at
MIXTURE_MASSES = np.linspace(0.2, 0.6, 9)


def mixture_count(labels: np.ndarray, probabilities: np.ndarray, masses: np.ndarray = MIXTURE_MASSES) -> int:
    """How many given labels score like a class the image does not belong to (see the module docs)."""
    n = len(labels)
    if n == 0:
        return 0
    given = probabilities[np.arange(n), labels]
    others = np.ones(probabilities.shape, bool)
    others[np.arange(n), labels] = False
    other_scores = np.sort(probabilities[others])
    thresholds = np.quantile(other_scores, masses)
    below_other = np.searchsorted(other_scores, thresholds, side="right") / len(other_scores)
    below_given = np.searchsorted(np.sort(given), thresholds, side="right") / n
    share = float(np.min(below_given / below_other))
    return int(round(min(1.0, share) * n))


def rank_label_issues(
    labels: np.ndarray, probabilities: np.ndarray, rank_by: str = "self_confidence", num_issues: str | int = "mixture"
) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the suspects, best suspect first; label quality of every sample)."""
    num_label_issues = require("cleanlab.count", "audit", "audit label_errors").num_label_issues
    get_label_quality_scores = require("cleanlab.rank", "audit", "audit label_errors").get_label_quality_scores

    if rank_by not in RANK_METHODS:
        raise ConfigError(f"audit.label_errors.rank_by={rank_by}: use one of {RANK_METHODS}")
    quality = get_label_quality_scores(labels, probabilities, method=rank_by)
    if isinstance(num_issues, str):
        if num_issues not in ESTIMATES:
            raise ConfigError(f"audit.label_errors.num_issues={num_issues}: use one of {ESTIMATES} or an integer")
        if num_issues == "mixture":
            count = mixture_count(labels, probabilities)
        else:
            count = int(num_label_issues(labels, probabilities, estimation_method=num_issues))
    else:
        count = int(num_issues)
        if count < 0:
            raise ConfigError(f"audit.label_errors.num_issues={num_issues}: must be >= 0")
    order = np.argsort(quality, kind="stable")
    return order[:count], quality


def run_label_errors(
    data: AuditData,
    ids: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    out_dir: Path,
    source: str,
    rank_by: str,
    num_issues: str | int,
    max_rows: int = 64,
) -> tuple[Section, list[str]]:
    """The section and the suspect ids, best first. Rows with NaN probabilities (unreadable images) are left out."""
    section = Section("label_errors", "Suspected label errors")
    usable = ~np.isnan(probabilities).any(axis=1)
    ids, labels, probabilities = ids[usable], labels[usable], probabilities[usable]
    present = np.unique(labels)
    if len(present) < 2:
        raise ConfigError("label errors need at least 2 classes among the audited images")
    write_atomic(
        out_dir / "out_of_sample.npz",
        lambda handle: np.savez(handle, ids=ids, labels=labels, probabilities=probabilities),
    )
    suspects, quality = rank_label_issues(labels, probabilities, rank_by, num_issues)
    names = data.class_names
    suggested = probabilities.argmax(axis=1)
    rows = [[ids[i], names[labels[i]], names[suggested[i]], f"{quality[i]:.6f}"] for i in suspects]
    section.files.append(write_csv(out_dir / "label_issues.csv", COLUMNS, rows))
    accuracy = float((suggested == labels).mean()) if len(labels) else float("nan")
    num_label_issues = require("cleanlab.count", "audit", "audit label_errors").num_label_issues

    cleanlab_count = int(num_label_issues(labels, probabilities, estimation_method="off_diagonal"))
    section.metrics.update(
        {
            "label_errors/cleanlab_off_diagonal": float(cleanlab_count),
            "label_errors/num_issues": float(len(suspects)),
            "label_errors/issue_fraction": len(suspects) / max(1, len(labels)),
            "label_errors/out_of_sample_accuracy": accuracy,
        }
    )
    section.markdown += [
        f"Out-of-sample probabilities: {source}; top-1 agreement with the given labels {accuracy:.3f} on "
        f"{len(labels)} images. Ranked by cleanlab's `{rank_by}` label quality (low = suspect); cut at "
        f"{_cut_name(num_issues)}"
        f" = {len(suspects)} suspects ({100 * len(suspects) / max(1, len(labels)):.1f}%). Full list: `label_issues.csv` "
        "(`id,given_label,suggested_label,quality`, best suspects first); every probability: `out_of_sample.npz`. "
        f"(cleanlab's own off-diagonal count would be {cleanlab_count}: it includes the model's confident mistakes.) "
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


def _cut_name(num_issues: str | int) -> str:
    if num_issues == "mixture":
        return "the mixture estimate of the share of wrong labels"
    if isinstance(num_issues, str):
        return f"cleanlab num_label_issues(estimation_method={num_issues!r})"
    return "audit.label_errors.num_issues"


def _grid(rows: list[list], thumbs: list[list[np.ndarray]], path: Path, per_row: int = 8) -> Path:
    plt = pyplot()
    lines = (len(rows) + per_row - 1) // per_row
    figure, axes = plt.subplots(lines, per_row, figsize=(per_row * 1.4, lines * 1.7), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (row, (thumb,)) in enumerate(zip(rows, thumbs, strict=True)):
        ax = axes[k // per_row, k % per_row]
        ax.imshow(thumb)
        ax.set_title(
            f"{escape_name(row[0])}\n{escape_name(row[1])} -> {escape_name(row[2])}\nq={float(row[3]):.3f}",
            fontsize=5.5,
        )
    return save_figure(figure, path)
