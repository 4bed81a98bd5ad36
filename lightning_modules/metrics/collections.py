"""Per-split torchmetrics collections and their flattening into loggable scalars.

Definitions (what a reported number means):

* ``recall/<class>``: hits / images of that class in the split. A class with **no images in
  the split** has no recall: it is reported as missing (NaN in the logs, ``null`` in
  ``metrics.json``), never as 0.0, which would be indistinguishable from a collapsed class.
* ``recall_macro`` (= ``balanced_acc``), ``recall_min``, ``recall_tail``: over the classes
  present in the split's targets.
* ``precision_macro`` and ``f1_macro``: over the classes present in the targets **or** the
  predictions (scikit-learn's ``average="macro"``): a class that is predicted but absent
  from the split has precision 0 and counts; a present class never predicted has precision 0.
* ``acc_top5`` only exists with more than 5 classes (with <= 5 it is always 1.0).
* ``ece``: expected calibration error of the top-1 softmax confidence, 15 equal-width bins
  (:mod:`litvision.lightning_modules.metrics.calibration`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from litvision.lightning_modules.metrics.calibration import LogitCalibrationError
from litvision.utils.names import escape_name


def train_metrics(num_classes: int) -> MetricCollection:
    """Cheap running accuracies for the training split (per step, no per-class state)."""
    # compute_groups=False: see EVAL_COMPUTE_GROUPS (top-1 and top-5 can look alike on one rank)
    return MetricCollection(_accuracies(num_classes), prefix="train/", compute_groups=False)


# Explicit, not auto-detected: torchmetrics groups metrics whose states happen to be equal
# after the FIRST update, which depends on each rank's first batch. Ranks with different
# groups issue different all-reduces at compute() and the synced per-class numbers are
# silently wrong under DDP (tests/test_ddp.py caught recall 0.67 for a class at 0.0).
# recall/precision/F1 share one set of per-class stat scores, so they form one group.
EVAL_COMPUTE_GROUPS = [["acc_top1"], ["acc_top5"], ["recall", "precision", "f1"], ["confmat"], ["ece"]]
TOP5 = 5


def eval_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """Everything reported for val/test: top-k, per-class recall/precision/F1, confusion."""
    metrics = _accuracies(num_classes)
    metrics.update(
        recall=MulticlassRecall(num_classes, average=None),
        precision=MulticlassPrecision(num_classes, average=None),
        f1=MulticlassF1Score(num_classes, average=None),
        confmat=MulticlassConfusionMatrix(num_classes),
        ece=LogitCalibrationError(num_classes),
    )
    groups = [group for group in EVAL_COMPUTE_GROUPS if all(name in metrics for name in group)]
    return MetricCollection(metrics, prefix=prefix, compute_groups=groups)


def _accuracies(num_classes: int) -> dict:
    accuracies = {"acc_top1": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
    if num_classes > TOP5:  # with <= 5 classes top-5 accuracy is 1.0 by construction: not reported
        accuracies["acc_top5"] = MulticlassAccuracy(num_classes, top_k=TOP5, average="micro")
    return accuracies


def unique_metric_names(class_names: Sequence[str]) -> list[str]:
    """Class names usable as metric-key suffixes: escaped (:mod:`litvision.utils.names`: a byte that is
    not UTF-8 is ``\\xNN``), no '/', empty names filled, all distinct.

    A name that occurs once keeps its (cleaned) spelling. A repeated name gets its class
    index (ImageNet's two 'crane' classes: ``crane_134``, ``crane_517``), an empty one
    becomes ``class_<index>``; a generated name that is already taken (``['x', 'x', 'x_1']``)
    gets the index appended again until it is free, so two classes never share a key.
    """
    cleaned = [escape_name(str(name).strip()).replace("/", "_") for name in class_names]
    counts = Counter(cleaned)
    taken = {name for name in cleaned if name and counts[name] == 1}
    names = []
    for i, name in enumerate(cleaned):
        if name and counts[name] == 1:
            names.append(name)
            continue
        candidate = f"{name}_{i}" if name else f"class_{i}"
        while candidate in taken:
            candidate = f"{candidate}_{i}"
        taken.add(candidate)
        names.append(candidate)
    return names


def flatten_results(
    results: dict[str, torch.Tensor],
    prefix: str,
    class_names: Sequence[str],
    class_counts: Sequence[int] | None = None,
) -> dict[str, float]:
    """Turn a computed eval collection into flat scalars, e.g. ``val/recall/cat``.

    See the module docstring for the definitions: recall of a class absent from the split
    is NaN (missing), recall macros are over the classes in the targets, precision/F1
    macros over the classes in the targets or the predictions. ``class_counts`` (the
    TRAINING counts) define which classes are the tail; without them the split's own
    support is used, which says nothing on a balanced val/test set.
    """
    names = unique_metric_names(class_names)
    confmat = results[f"{prefix}confmat"]
    support = confmat.sum(dim=1)
    present = support > 0
    # rows = targets, columns = predictions: a class counts for precision once either is non-zero
    in_targets_or_predictions = present | (confmat.sum(dim=0) > 0)
    flat = {f"{prefix}acc_top1": float(results[f"{prefix}acc_top1"])}
    if f"{prefix}acc_top5" in results:
        flat[f"{prefix}acc_top5"] = float(results[f"{prefix}acc_top5"])
    if f"{prefix}ece" in results:
        flat[f"{prefix}ece"] = float(results[f"{prefix}ece"])
    recall = results[f"{prefix}recall"].float()
    for kind, classes in (
        ("recall", present),
        ("precision", in_targets_or_predictions),
        ("f1", in_targets_or_predictions),
    ):
        values = results[f"{prefix}{kind}"].float()
        flat[f"{prefix}{kind}_macro"] = float(values[classes].mean()) if classes.any() else float("nan")
    for name, value, has_images in zip(names, recall.tolist(), present.tolist(), strict=True):
        flat[f"{prefix}recall/{name}"] = value if has_images else float("nan")
    if present.any():
        present_recall = recall[present]
        flat[f"{prefix}recall_min"] = float(present_recall.min())
        # Tail = rarest third of the classes by training count (else this split's support):
        # the accuracy paradox shows up here first (high top-1, collapsed rare classes).
        rarity = support if class_counts is None else torch.as_tensor(list(class_counts), device=support.device)
        if rarity.shape != support.shape:
            raise ValueError(f"{len(rarity)} class_counts for {len(support)} classes")
        order = torch.argsort(rarity[present].float(), stable=True)
        n_tail = max(1, len(order) // 3)
        flat[f"{prefix}recall_tail"] = float(present_recall[order[:n_tail]].mean())
    flat[f"{prefix}balanced_acc"] = flat[f"{prefix}recall_macro"]
    return flat
