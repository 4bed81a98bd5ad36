"""Metric values against hand-computed ones on a fixed small example."""

from __future__ import annotations

import math

import pytest
import torch

from litvision.lightning_modules.metrics.collections import eval_metrics, flatten_results, unique_metric_names

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
    # recall = hits / support per class
    expected = {"cat": 1 / 1, "dog": 1 / 2, "bird": 1 / 2, "frog": 1 / 2, "ant": 0 / 1}
    for name, value in expected.items():
        assert flat[f"val/recall/{name}"] == pytest.approx(value), name


def test_class_absent_from_the_split_has_missing_recall_not_zero() -> None:
    """ "fish" (class 3) has no images here: its recall is undefined (NaN), unlike "ant" (0 of 1)."""
    flat = compute()
    assert math.isnan(flat["val/recall/fish"])
    assert flat["val/recall/ant"] == 0.0


def test_absent_class_is_null_in_metrics_json(tmp_path) -> None:
    import json
    from types import SimpleNamespace

    from litvision.callbacks.metrics_summary import MetricsSummary

    summary = MetricsSummary(tmp_path / "metrics.json", print_table=False)
    trainer = SimpleNamespace(callback_metrics={key: torch.tensor(value) for key, value in compute().items()})
    summary._collect(trainer, "val/")  # what on_validation_end does with the logged values
    summary._write()
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["val/recall/fish"] is None and written["val/recall/cat"] == 1.0


def test_macro_scores_match_scikit_learn() -> None:
    """Recall macro (= balanced accuracy) over the classes in the targets; precision and F1
    macro over targets + predictions, as scikit-learn defines them: "fish" is predicted once
    but has no images, so it enters precision_macro with precision 0."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    flat = compute()
    predicted = LOGITS.argmax(1).numpy()
    targets = TARGETS.numpy()
    assert 3 in predicted and 3 not in targets  # the case under test
    assert flat["val/recall_macro"] == pytest.approx(sklearn_metrics.balanced_accuracy_score(targets, predicted))
    assert flat["val/balanced_acc"] == flat["val/recall_macro"]
    assert flat["val/precision_macro"] == pytest.approx(
        sklearn_metrics.precision_score(targets, predicted, average="macro", zero_division=0)
    )
    assert flat["val/f1_macro"] == pytest.approx(
        sklearn_metrics.f1_score(targets, predicted, average="macro", zero_division=0)
    )
    assert flat["val/recall_min"] == 0.0


def test_predicted_but_absent_class_lowers_precision_macro() -> None:
    """Hand count: predictions per class 0 -> 3 (1 right), 1 -> 1 (1), 2 -> 1 (1), 3 -> 1 (0, no
    images of class 3), 4 -> 1 (1), 5 -> 1 (0)."""
    flat = compute()
    precision = {"cat": 1 / 3, "dog": 1.0, "bird": 1.0, "fish": 0.0, "frog": 1.0, "ant": 0.0}
    assert flat["val/precision_macro"] == pytest.approx(sum(precision.values()) / 6)


def test_class_neither_present_nor_predicted_is_left_out_of_every_macro() -> None:
    names = ["a", "b", "c", "d", "e", "f", "g"]
    metrics = eval_metrics(len(names), "test/")
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 2]), len(names)).float()
    metrics.update(logits, torch.tensor([0, 1, 2, 2]))
    flat = flatten_results(metrics.compute(), "test/", names)
    assert flat["test/recall_macro"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert flat["test/precision_macro"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert all(math.isnan(flat[f"test/recall/{n}"]) for n in "defg")


def test_top5_accuracy_is_not_reported_with_five_classes_or_fewer() -> None:
    names = ["a", "b", "c", "d", "e"]
    metrics = eval_metrics(len(names), "val/")
    metrics.update(torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0]))
    flat = flatten_results(metrics.compute(), "val/", names)
    assert "val/acc_top5" not in flat and "val/acc_top1" in flat
    from litvision.lightning_modules.metrics.collections import train_metrics

    assert set(train_metrics(5).keys()) == {"train/acc_top1"}
    assert set(train_metrics(6).keys()) == {"train/acc_top1", "train/acc_top5"}


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


def test_generated_names_never_collide_with_real_ones() -> None:
    assert unique_metric_names(["x", "x", "x_1"]) == ["x_0", "x_1_1", "x_1"]
    assert unique_metric_names(["class_1", ""]) == ["class_1", "class_1_1"]


def test_metric_names_are_distinct_for_every_small_list() -> None:
    """Exhaustive over short lists of awkward names: always distinct, unique names kept."""
    import itertools

    alphabet = ["x", "x_1", "x_1_1", "x_0", "", "class_0", "class_1", "a/b", "a_b"]
    for length in range(1, 4):
        for names in itertools.product(alphabet, repeat=length):
            result = unique_metric_names(list(names))
            assert len(set(result)) == len(result), (names, result)
            assert all("/" not in r and r for r in result)
            cleaned = [n.replace("/", "_") for n in names]
            for name, out in zip(cleaned, result, strict=True):
                if name and cleaned.count(name) == 1:
                    assert out == name, (names, result)


def test_flatten_has_no_nan_for_present_classes() -> None:
    flat = compute()
    present = {NAMES[i] for i in TARGETS.tolist()}
    assert all(not math.isnan(flat[f"val/recall/{name}"]) for name in present)
