"""Metric values against hand-computed ones on a fixed small example."""

from __future__ import annotations

import math

import pytest
import torch

from litvision.lightning_modules.metrics import eval_metrics, flatten_results, unique_metric_names

NAMES = ["cat", "dog", "bird", "fish", "frog", "ant"]

# 6 classes, 8 samples. Rows: logits; we only care about the ranking per row.
LOGITS = torch.tensor(
    [
        [9, 8, 7, 6, 5, 4],  # true 0 -> top1 0 (hit), in top5
        [9, 8, 7, 6, 5, 4],  # true 1 -> top1 0 (miss), rank 2 in top5
        [4, 9, 8, 7, 6, 5],  # true 1 -> top1 1 (hit)
        [9, 8, 7, 6, 5, 4],  # true 5 -> top1 0 (miss), rank 6: NOT in top5
        [4, 5, 9, 6, 7, 8],  # true 2 -> top1 2 (hit)
        [4, 5, 6, 9, 7, 8],  # true 2 -> top1 3 (miss), rank 5 (value 6 is 5th largest): in top5
        [4, 5, 6, 7, 9, 8],  # true 4 -> top1 4 (hit)
        [4, 5, 6, 7, 8, 9],  # true 4 -> top1 5 (miss), rank 2
    ],
    dtype=torch.float32,
)
TARGETS = torch.tensor([0, 1, 1, 5, 2, 2, 4, 4])


def compute(prefix: str = "val/") -> dict[str, float]:
    metrics = eval_metrics(len(NAMES), prefix)
    # Two updates, like two batches, to exercise accumulation.
    metrics.update(LOGITS[:5], TARGETS[:5])
    metrics.update(LOGITS[5:], TARGETS[5:])
    return flatten_results(metrics.compute(), prefix, NAMES)


def test_topk_accuracy_matches_hand_count() -> None:
    flat = compute()
    assert flat["val/acc_top1"] == pytest.approx(4 / 8)
    assert flat["val/acc_top5"] == pytest.approx(7 / 8)


def test_per_class_recall_by_name_matches_hand_count() -> None:
    flat = compute()
    # recall = hits / support per class; "fish" (class 3) has no samples -> 0 by torchmetrics' convention
    expected = {"cat": 1 / 1, "dog": 1 / 2, "bird": 1 / 2, "fish": 0.0, "frog": 1 / 2, "ant": 0 / 1}
    for name, value in expected.items():
        assert flat[f"val/recall/{name}"] == pytest.approx(value), name


def test_macro_scores_ignore_classes_absent_from_targets() -> None:
    flat = compute()
    present_recalls = [1.0, 0.5, 0.5, 0.5, 0.0]  # cat dog bird frog ant (fish absent)
    assert flat["val/recall_macro"] == pytest.approx(sum(present_recalls) / 5)
    assert flat["val/balanced_acc"] == flat["val/recall_macro"]
    # precision: predictions per class: 0 -> 3 (1 right), 1 -> 1 (1), 2 -> 1 (1), 3 -> 1 (0), 4 -> 1 (1), 5 -> 1 (0)
    precision = {"cat": 1 / 3, "dog": 1.0, "bird": 1.0, "frog": 1.0, "ant": 0.0}
    assert flat["val/precision_macro"] == pytest.approx(sum(precision.values()) / 5)
    recall = dict(zip(["cat", "dog", "bird", "frog", "ant"], present_recalls))
    f1 = [
        0.0 if precision[n] + recall[n] == 0 else 2 * precision[n] * recall[n] / (precision[n] + recall[n])
        for n in precision
    ]
    assert flat["val/f1_macro"] == pytest.approx(sum(f1) / 5)
    assert flat["val/recall_min"] == 0.0


def test_confusion_matrix_counts() -> None:
    metrics = eval_metrics(len(NAMES), "test/")
    metrics.update(LOGITS, TARGETS)
    confmat = metrics.compute()["test/confmat"]
    assert int(confmat.sum()) == len(TARGETS)
    assert int(confmat[1, 0]) == 1  # a dog predicted as cat
    assert int(confmat[5, 0]) == 1  # an ant predicted as cat
    assert int(confmat.diag().sum()) == 4


def test_metric_names_are_unique_and_key_safe() -> None:
    assert unique_metric_names(["crane", "a/b", "crane", ""]) == ["crane_0", "a_b", "crane_2", "class_3"]


def test_flatten_has_no_nan_for_present_classes() -> None:
    flat = compute()
    assert all(not math.isnan(v) for k, v in flat.items() if k.startswith("val/recall/"))
