"""The overfitting warning fires when a model memorises, not on the recipe the README recommends."""

from __future__ import annotations

import pytest

from litvision.callbacks.overfitting_monitor import EpochGaps, OverfittingMonitor, memorising

# `python train.py experiment=cifar10_cpu dataset.data_dir=../shared/data/cifar10-subset` (2026-12-03, test top-1
# 0.7931): per epoch (epoch, train top-1, val top-1, train loss, val loss). The old rule (train/val_gap > 0.15)
# warned at epochs 7 (a high-LR dip: val 0.536) and 19 (0.960 vs 0.794, val loss still falling).
RECIPE = [
    (0, 0.252, 0.350, 2.096, 1.780),
    (1, 0.393, 0.461, 1.762, 1.575),
    (2, 0.475, 0.530, 1.610, 1.371),
    (3, 0.533, 0.521, 1.503, 1.406),
    (4, 0.581, 0.543, 1.419, 1.337),
    (5, 0.620, 0.614, 1.329, 1.135),
    (6, 0.668, 0.552, 1.261, 1.309),
    (7, 0.703, 0.536, 1.197, 1.375),
    (8, 0.724, 0.661, 1.135, 0.990),
    (9, 0.753, 0.678, 1.074, 0.922),
    (10, 0.775, 0.635, 1.048, 1.023),
    (11, 0.808, 0.674, 0.997, 0.954),
    (12, 0.826, 0.747, 0.950, 0.804),
    (13, 0.848, 0.738, 0.909, 0.846),
    (14, 0.869, 0.740, 0.872, 0.767),
    (15, 0.887, 0.764, 0.835, 0.745),
    (16, 0.895, 0.766, 0.809, 0.713),
    (17, 0.924, 0.794, 0.764, 0.683),
    (18, 0.945, 0.818, 0.721, 0.658),
    (19, 0.960, 0.794, 0.698, 0.638),
]

# A model memorising a small training set: training loss towards 0, val loss turning up from epoch 6
# while val top-1 stalls at ~0.62 (train top-1 -> 1.0: the gap stays under 0.3 until epoch 9).
MEMORISING = [
    (0, 0.30, 0.35, 1.90, 1.75),
    (1, 0.45, 0.46, 1.50, 1.48),
    (2, 0.56, 0.53, 1.20, 1.30),
    (3, 0.66, 0.58, 0.95, 1.18),
    (4, 0.74, 0.60, 0.74, 1.12),
    (5, 0.81, 0.62, 0.56, 1.10),
    (6, 0.86, 0.62, 0.42, 1.14),
    (7, 0.90, 0.62, 0.30, 1.21),
    (8, 0.92, 0.63, 0.21, 1.30),
    (9, 0.96, 0.62, 0.14, 1.41),
    (10, 0.98, 0.62, 0.09, 1.52),
]


def first_warning(curve, **options) -> tuple[int, str] | None:
    history: list[EpochGaps] = []
    for epoch, train_acc, val_acc, train_loss, val_loss in curve:
        history.append(EpochGaps(epoch, val_loss, train_loss, train_acc - val_acc))
        reason = memorising(history, **options)
        if reason:
            return epoch, reason
    return None


def test_the_readme_recipe_does_not_warn() -> None:
    assert first_warning(RECIPE) is None


def test_a_memorising_run_warns_once_val_loss_has_risen_for_three_epochs() -> None:
    epoch, reason = first_warning(MEMORISING)
    assert epoch == 8  # best val loss at epoch 5; epochs 6, 7, 8 worse while the training loss fell
    assert reason == (
        "val/loss has not improved for 3 epochs (best 1.100 at epoch 5, now 1.300) while the training "
        "loss fell from 0.560 to 0.210"
    )


def test_a_gap_no_augmentation_explains_warns_at_once() -> None:
    epoch, reason = first_warning([(0, 1.0, 0.0, 0.01, 3.0)])
    assert epoch == 0 and reason.startswith("train top-1 is 1.000 above val top-1")


def test_without_accuracy_the_loss_trend_alone_decides() -> None:
    """Mixup/CutMix: no train/val_gap, the trend still counts (label smoothing and mixing shift the
    training loss's level, not its direction)."""
    history = [EpochGaps(e, val_loss, train_loss + 0.5, None) for e, _, _, train_loss, val_loss in MEMORISING]
    assert [memorising(history[: k + 1]) is not None for k in range(len(history))].index(True) == 8


@pytest.mark.parametrize("patience", [2, 5])
def test_patience_is_the_number_of_epochs_without_a_better_val_loss(patience: int) -> None:
    assert first_warning(MEMORISING, patience=patience, max_gap=1.0)[0] == 5 + patience


def test_a_val_loss_that_worsens_while_training_loss_rises_too_is_not_memorising() -> None:
    """A diverging run (both losses up): something else is wrong, not memorisation."""
    diverging = [(e, 0.5, 0.5, 1.0 + 0.1 * max(0, e - 2), 1.0 + 0.1 * max(0, e - 2)) for e in range(8)]
    assert first_warning(diverging) is None


def test_a_resumed_run_keeps_the_history() -> None:
    monitor = OverfittingMonitor()
    monitor.history = [EpochGaps(e, v, t, a - b) for e, a, b, t, v in MEMORISING[:6]]
    resumed = OverfittingMonitor()
    resumed.load_state_dict(monitor.state_dict())
    assert resumed.history == monitor.history and resumed.warned is False
