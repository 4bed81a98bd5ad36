"""Per-split torchmetrics collections and their flattening into loggable scalars."""

from __future__ import annotations

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


def train_metrics(num_classes: int) -> MetricCollection:
    """Cheap running accuracies for the training split (per step, no per-class state)."""
    # compute_groups=False: see EVAL_COMPUTE_GROUPS (top-1 and top-5 can look alike on one rank)
    return MetricCollection(_accuracies(num_classes), prefix="train/", compute_groups=False)


# Explicit, not auto-detected: torchmetrics groups metrics whose states happen to be equal
# after the FIRST update, which depends on each rank's first batch. Ranks with different
# groups issue different all-reduces at compute() and the synced per-class numbers are
# silently wrong under DDP (tests/test_ddp.py caught recall 0.67 for a class at 0.0).
# recall/precision/F1 share one set of per-class stat scores, so they form one group.
EVAL_COMPUTE_GROUPS = [["acc_top1"], ["acc_top5"], ["recall", "precision", "f1"], ["confmat"]]


def eval_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """Everything reported for val/test: top-k, per-class recall/precision/F1, confusion."""
    metrics = _accuracies(num_classes)
    metrics.update(
        recall=MulticlassRecall(num_classes, average=None),
        precision=MulticlassPrecision(num_classes, average=None),
        f1=MulticlassF1Score(num_classes, average=None),
        confmat=MulticlassConfusionMatrix(num_classes),
    )
    return MetricCollection(metrics, prefix=prefix, compute_groups=EVAL_COMPUTE_GROUPS)


def _accuracies(num_classes: int) -> dict:
    return {
        "acc_top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
        "acc_top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
    }


def unique_metric_names(class_names: Sequence[str]) -> list[str]:
    """Class names usable as metric-key suffixes: no '/', and duplicates made unique.

    (ImageNet has repeated names, e.g. two different 'crane' classes.)
    """
    cleaned = [str(name).strip().replace("/", "_") or f"class_{i}" for i, name in enumerate(class_names)]
    seen: dict[str, int] = {}
    for name in cleaned:
        seen[name] = seen.get(name, 0) + 1
    return [f"{name}_{i}" if seen[name] > 1 else name for i, name in enumerate(cleaned)]


def flatten_results(
    results: dict[str, torch.Tensor],
    prefix: str,
    class_names: Sequence[str],
    class_counts: Sequence[int] | None = None,
) -> dict[str, float]:
    """Turn a computed eval collection into flat scalars, e.g. ``val/recall/cat``.

    Macro averages are taken over the classes that occur in this split's targets
    (support > 0), so an absent class does not drag a macro score to 0 by fiat.
    ``class_counts`` (the TRAINING counts) define which classes are the tail; without
    them the split's own support is used, which says nothing on a balanced val/test set.
    """
    names = unique_metric_names(class_names)
    confmat = results[f"{prefix}confmat"]
    support = confmat.sum(dim=1)
    present = support > 0
    flat = {f"{prefix}acc_top1": float(results[f"{prefix}acc_top1"]), f"{prefix}acc_top5": float(results[f"{prefix}acc_top5"])}
    recall = results[f"{prefix}recall"].float()
    for kind in ("recall", "precision", "f1"):
        values = results[f"{prefix}{kind}"].float()
        flat[f"{prefix}{kind}_macro"] = float(values[present].mean()) if present.any() else float("nan")
    for name, value in zip(names, recall.tolist()):
        flat[f"{prefix}recall/{name}"] = value
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
