"""Per-group accuracy (worst-group accuracy, the accuracy paradox by group), exact under DDP.

:class:`GroupCounts` keeps, for every group of every group column, the images per true class
and the hits per true class: integer counts summed across ranks at ``compute()`` (each sample
is on exactly one rank: the eval samplers are unpadded), so the numbers are those of one
process on the whole split. Fairlearn's ``MetricFrame`` computes the same after the fact from
gathered predictions; torchmetrics' fairness metrics are binary only: neither fits here.

From the counts (:func:`group_summary`):

* ``<split>/group/<column>/<group>/acc_top1`` (hits / images), ``/balanced_acc`` (mean recall over
  the classes present in the group), ``/recall/<class>``, ``/n``. A group listed in the file but
  with no image in the split is **absent**: ``n`` = 0 and its accuracies missing (NaN, ``null`` in
  metrics.json), never 0.
* ``<split>/worst_group_acc``: the lowest group accuracy over every column's present groups;
  ``<split>/worst_group_gap``: overall top-1 minus it (the largest gap to the overall figure);
  both with a 95% bootstrap interval (``_ci_low``/``_ci_high``). With one group per sample and
  column, resampling the images of each group with replacement changes only each group's
  number of hits, which is then Binomial(n_g, acc_g): the stratified bootstrap is drawn from
  the counts alone, so it is the same on every rank and needs no per-sample gather
  (:func:`bootstrap_worst`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric

from litvision.lightning_modules.metrics.collections import unique_metric_names

CI_LEVEL = 0.95


class GroupCounts(Metric):
    """Images and hits per (group, true class) and overall per class; ``codes`` (B, columns) are
    global group indices (column offsets added), -1 where a sample has no group in that column."""

    full_state_update = False
    # the states add_state registers, declared for the type checker
    support: torch.Tensor
    correct: torch.Tensor
    all_support: torch.Tensor
    all_correct: torch.Tensor

    def __init__(self, num_groups: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        for name, shape in (("support", (num_groups, num_classes)), ("correct", (num_groups, num_classes))):
            self.add_state(name, torch.zeros(shape, dtype=torch.long), dist_reduce_fx="sum")
        for name in ("all_support", "all_correct"):
            self.add_state(name, torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, targets: torch.Tensor, codes: torch.Tensor) -> None:
        hits = (preds == targets).long()
        self.all_support += torch.bincount(targets, minlength=self.num_classes)
        self.all_correct += torch.bincount(targets, weights=hits, minlength=self.num_classes).long()
        codes = codes.reshape(len(targets), -1)
        cells = self.support.numel()
        for column in range(codes.shape[1]):
            group = codes[:, column]
            keep = group >= 0
            flat = group[keep] * self.num_classes + targets[keep]
            self.support += torch.bincount(flat, minlength=cells).view_as(self.support)
            self.correct += torch.bincount(flat, weights=hits[keep], minlength=cells).long().view_as(self.correct)

    def compute(self) -> dict[str, torch.Tensor]:
        return {
            "support": self.support,
            "correct": self.correct,
            "all_support": self.all_support,
            "all_correct": self.all_correct,
        }


def _balanced(support: np.ndarray, correct: np.ndarray) -> float:
    present = support > 0
    return float((correct[present] / support[present]).mean()) if present.any() else float("nan")


def _interval(samples: np.ndarray) -> tuple[float, float]:
    samples = samples[~np.isnan(samples)]
    if not len(samples):
        return float("nan"), float("nan")
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_worst(
    n: Sequence[np.ndarray], k: Sequence[np.ndarray], n_all: int, k_all: int, draws: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap draws of (worst-group accuracy, overall - worst) over several columns' present groups.

    ``n[j]``/``k[j]``: images and hits of column j's groups (all > 0). Each group's hits are redrawn
    Binomial(n_g, k_g / n_g) (its images resampled with replacement, stratified by the first
    column's groups); the overall figure is the first column's redrawn hits plus a redraw of the
    images in none of its groups, so overall and worst move together as in a resample of the images.
    Returns two arrays of ``draws`` values.
    """
    rng = np.random.default_rng(seed)
    worst = np.full(draws, np.inf)
    overall_hits = np.zeros(draws)
    for j, (sizes, hits) in enumerate(zip(n, k, strict=True)):
        if not len(sizes):
            continue
        redrawn = rng.binomial(sizes[None, :], (hits / sizes)[None, :], size=(draws, len(sizes)))
        worst = np.minimum(worst, (redrawn / sizes).min(axis=1))
        if j == 0:
            overall_hits = redrawn.sum(axis=1).astype(float)
    first_n, first_k = (int(n[0].sum()), int(k[0].sum())) if len(n) else (0, 0)
    rest_n = n_all - first_n
    if rest_n > 0:
        overall_hits = overall_hits + rng.binomial(rest_n, (k_all - first_k) / rest_n, size=draws)
    overall = overall_hits / n_all if n_all else np.full(draws, np.nan)
    worst[np.isinf(worst)] = np.nan
    return worst, overall - worst


def group_summary(
    counts: dict[str, torch.Tensor],
    prefix: str,
    columns: Sequence[str],
    group_names: Sequence[Sequence[str]],
    class_names: Sequence[str],
    draws: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Flat metrics (see the module docstring) from :meth:`GroupCounts.compute`'s counts."""
    support = counts["support"].cpu().numpy()
    correct = counts["correct"].cpu().numpy()
    n_all, k_all = int(counts["all_support"].sum()), int(counts["all_correct"].sum())
    overall = k_all / n_all if n_all else float("nan")
    classes = unique_metric_names(class_names)
    flat: dict[str, float] = {}
    offset = 0
    worst_acc, worst_key = float("inf"), None
    sizes, hits = [], []
    for column, names in zip(columns, group_names, strict=True):
        column_n, column_k = [], []
        for g, name in enumerate(unique_metric_names(names)):
            s, c = support[offset + g], correct[offset + g]
            key = f"{prefix}group/{column}/{name}/"
            n = int(s.sum())
            flat[f"{key}n"] = float(n)
            flat[f"{key}acc_top1"] = c.sum() / n if n else float("nan")
            flat[f"{key}balanced_acc"] = _balanced(s, c)
            for cls, cs, cc in zip(classes, s.tolist(), c.tolist(), strict=True):
                flat[f"{key}recall/{cls}"] = cc / cs if cs else float("nan")
            if n:
                column_n.append(n)
                column_k.append(int(c.sum()))
                if flat[f"{key}acc_top1"] < worst_acc:
                    worst_acc, worst_key = flat[f"{key}acc_top1"], f"{column}/{name}"
        offset += len(names)
        sizes.append(np.asarray(column_n, dtype=np.int64))
        hits.append(np.asarray(column_k, dtype=np.int64))
    if worst_key is None:
        flat[f"{prefix}worst_group_acc"] = flat[f"{prefix}worst_group_gap"] = float("nan")
        return flat
    flat[f"{prefix}worst_group_acc"] = float(worst_acc)
    flat[f"{prefix}worst_group_gap"] = float(overall - worst_acc)
    worst_draws, gap_draws = bootstrap_worst(sizes, hits, n_all, k_all, draws, seed)
    for name, samples in (("worst_group_acc", worst_draws), ("worst_group_gap", gap_draws)):
        flat[f"{prefix}{name}_ci_low"], flat[f"{prefix}{name}_ci_high"] = _interval(samples)
    return {key: float(value) for key, value in flat.items()}


def worst_group_name(flat: dict[str, float], prefix: str) -> str | None:
    """``<column>/<group>`` of the worst present group in :func:`group_summary`'s output."""
    best: tuple[float, str] | None = None
    start = f"{prefix}group/"
    for key, value in flat.items():
        if key.startswith(start) and key.endswith("/acc_top1") and not np.isnan(value):
            if best is None or value < best[0]:
                best = (value, key[len(start) : -len("/acc_top1")])
    return None if best is None else best[1]
