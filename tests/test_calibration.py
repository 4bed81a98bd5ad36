"""Expected calibration error (lightning_modules/metrics/calibration.py) and the accuracy-paradox rule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from litvision.callbacks.accuracy_paradox import paradox_report
from litvision.lightning_modules.metrics.calibration import LogitCalibrationError
from tests.helpers.gloo_ranks import run_on_ranks

# Five samples per row: (probabilities over 5 classes, true label). Top-1 confidences 0.95, 0.95,
# 0.55, 0.55, 0.25, 0.25 fall in the 15-bin ECE's bins [14/15, 1), [8/15, 9/15), [3/15, 4/15).
PROBS = [
    ([0.95, 0.02, 0.01, 0.01, 0.01], 0),  # right
    ([0.95, 0.02, 0.01, 0.01, 0.01], 1),  # wrong
    ([0.10, 0.55, 0.15, 0.10, 0.10], 1),  # right
    ([0.10, 0.10, 0.55, 0.15, 0.10], 2),  # right
    ([0.20, 0.20, 0.20, 0.15, 0.25], 0),  # wrong
    ([0.25, 0.20, 0.20, 0.20, 0.15], 3),  # wrong
]
# bin of 0.95: accuracy 1/2, confidence 0.95; bin of 0.55: 1, 0.55; bin of 0.25: 0, 0.25 (2 of 6 each)
ECE_BY_HAND = (2 / 6) * abs(0.5 - 0.95) + (2 / 6) * abs(1.0 - 0.55) + (2 / 6) * abs(0.0 - 0.25)


def as_logits(rows):
    probs = torch.tensor([p for p, _ in rows])
    return probs.log(), torch.tensor([y for _, y in rows])  # softmax(log p) = p


def test_ece_equals_the_hand_computation() -> None:
    logits, labels = as_logits(PROBS)
    metric = LogitCalibrationError(5)
    metric.update(logits[:4], labels[:4])
    metric.update(logits[4:], labels[4:])
    assert float(metric.compute()) == pytest.approx(ECE_BY_HAND, abs=1e-6)
    bins = metric.reliability
    assert bins["count"].sum() == 6
    filled = {
        i: (float(bins["accuracy"][i]), float(bins["confidence"][i]))
        for i in torch.nonzero(bins["count"]).flatten().tolist()
    }
    assert filled == {14: (0.5, pytest.approx(0.95)), 8: (1.0, pytest.approx(0.55)), 3: (0.0, pytest.approx(0.25))}


def test_logits_that_look_like_probabilities_are_still_logits() -> None:
    """torchmetrics alone takes values inside [0, 1] for probabilities; a classifier's logits can be."""
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.5]])
    labels = torch.tensor([0, 0, 2])
    confidence, predicted = logits.softmax(dim=1).max(dim=1)
    correct = (predicted == labels).float()
    # by hand: 15 equal-width bins of the softmax confidence
    bins: dict[int, list[int]] = {}
    for i, c in enumerate(confidence.tolist()):
        bins.setdefault(int(c * 15), []).append(i)
    by_hand = sum(len(m) / 3 * abs(float(correct[m].mean()) - float(confidence[m].mean())) for m in bins.values())
    ours = LogitCalibrationError(3)
    ours.update(logits, labels)
    assert float(ours.compute()) == pytest.approx(by_hand, abs=1e-6)
    plain = MulticlassCalibrationError(3)
    plain.update(logits, labels)
    assert float(plain.compute()) != pytest.approx(by_hand, abs=1e-3)  # what the subclass is for


# ---- two gloo processes, unequal shards: the synced ECE is the single-process one --------------


def _shard_ece(rank: int, world_size: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(37, 4, generator=generator) * 3
    labels = torch.randint(0, 4, (37,), generator=generator)
    metric = LogitCalibrationError(4)
    indices = torch.arange(rank, 37, world_size)  # 19 and 18 samples
    for chunk in indices.split(5):
        metric.update(logits[chunk], labels[chunk])
    value = float(metric.compute())
    return {
        "ece": value,
        "count": metric.reliability["count"].tolist(),
        "accuracy": metric.reliability["accuracy"].tolist(),
    }


@pytest.mark.slow  # ~10-35 s of process start-up; tests/test_ddp.py checks test/ece under ddp_sim by default
def test_ece_synced_across_two_ranks_equals_single_process(tmp_path: Path) -> None:
    results = run_on_ranks(_shard_ece, tmp_path)
    single = _shard_ece(0, 1)
    assert 0.05 < single["ece"] < 0.9 and sum(single["count"]) == 37
    for synced in results:
        assert synced["ece"] == pytest.approx(single["ece"], rel=1e-6)
        assert synced["count"] == single["count"]
        assert synced["accuracy"] == pytest.approx(single["accuracy"])


# ---- the accuracy-paradox rule ------------------------------------------------------------------


def confmat(rows) -> torch.Tensor:
    return torch.tensor(rows)


def test_paradox_fires_on_a_collapsed_rare_class() -> None:
    # 3 classes: two big ones learned, the rare one always taken for class 0: top-1 0.9
    scalars, worst, pairs = paradox_report(
        confmat([[45, 0, 0], [0, 45, 0], [10, 0, 0]]),
        ["cat", "dog", "rare"],
        min_top1=0.5,
        recall_gap=0.3,
        num_worst=2,
        num_pairs=3,
    )
    assert scalars["test/paradox/warning"] == 1.0 and scalars["test/paradox/classes_below"] == 1.0
    assert scalars["test/paradox/recall_gap"] == pytest.approx(0.9)
    assert worst[0] == ("rare", 10, 0.0)
    assert pairs == [("rare", "cat", 10, 1.0)] and scalars["test/confused/rare->cat"] == 1.0


def test_paradox_silent_when_healthy_or_when_top1_is_low() -> None:
    healthy = confmat([[9, 1, 0], [1, 8, 1], [0, 1, 9]])  # top-1 0.867, worst recall 0.8
    scalars, _, _ = paradox_report(healthy, ["a", "b", "c"], 0.5, 0.3, 5, 5)
    assert scalars["test/paradox/warning"] == 0.0
    poor = confmat([[4, 6, 0], [5, 5, 0], [10, 0, 0]])  # top-1 0.3: a bad model, not a paradox
    scalars, _, _ = paradox_report(poor, ["a", "b", "c"], 0.5, 0.3, 5, 5)
    assert scalars["test/paradox/warning"] == 0.0 and scalars["test/paradox/classes_below"] == 1.0


def test_a_class_absent_from_the_test_split_is_not_a_collapsed_class() -> None:
    scalars, worst, _ = paradox_report(confmat([[10, 0, 0], [0, 10, 0], [0, 0, 0]]), ["a", "b", "c"], 0.5, 0.3, 5, 5)
    assert scalars["test/paradox/warning"] == 0.0 and [w[0] for w in worst] == ["a", "b"]
    assert not any(math.isnan(v) for v in scalars.values())
