"""Run reports of a real ``train.py`` run (callbacks/accuracy_paradox.py, overfitting_monitor.py,
reliability_diagram.py, misclassified_examples.py; ECE in the metrics).

The data dictate what the model predicts (tests/helpers/report_models.py), so the collapsed-class and
memorising run must raise the warnings, and the healthy run must stay silent.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from litvision.datamodules.sampling.splits import stratified_split
from tests.helpers.report_models import CLASSES, OVERRIDES, write_encoded_cifar
from tests.helpers.run_helpers import read_metrics, run_script

PER_CLASS_TRAIN, PER_CLASS_TEST = 20, 20
CORRECT_MARGIN = 4.0  # confidence e^4 / (e^4 + 4) = 0.932


def train_pool(val_wrong: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(5), PER_CLASS_TRAIN)
    predicted = labels.copy()
    if val_wrong:  # the images the DataModule holds out for validation (val_fraction=0.2, split_seed=0)
        _, val_idx = stratified_split(labels, 0.2, 0)
        predicted[val_idx] = (labels[val_idx] + 1) % 5
    return labels, predicted, np.full(len(labels), CORRECT_MARGIN)


def collapsed_test() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class e always predicted as a (margins 1.0..4.8), two b images as c (margins 6, 5.5): top-1 0.78."""
    labels = np.repeat(np.arange(5), PER_CLASS_TEST)
    predicted, margins = labels.copy(), np.full(len(labels), CORRECT_MARGIN)
    e = np.flatnonzero(labels == 4)
    predicted[e], margins[e] = 0, np.linspace(1.0, 4.8, len(e))
    b = np.flatnonzero(labels == 1)[:2]
    predicted[b], margins[b] = 2, [6.0, 5.5]
    return labels, predicted, margins


def healthy_test() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One mistake per class: every recall 0.95 = top-1."""
    labels = np.repeat(np.arange(5), PER_CLASS_TEST)
    predicted = labels.copy()
    first = [np.flatnonzero(labels == c)[0] for c in range(5)]
    predicted[first] = (labels[first] + 1) % 5
    return labels, predicted, np.full(len(labels), CORRECT_MARGIN)


def run_train(tmp_path: Path, name: str, train, test, *extra: str) -> tuple[Path, str]:
    root = write_encoded_cifar(tmp_path / f"{name}_data", train, test)
    run_dir = tmp_path / name
    proc = run_script(
        "train.py",
        "logger=[wandb,csv]",
        "trainer.max_epochs=2",
        f"dataset.data_dir={root}",
        f"hydra.run.dir={run_dir}",
        *OVERRIDES,
        *extra,
    )
    return run_dir, (run_dir / "train.log").read_text() + proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def collapsed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return run_train(tmp_path_factory.mktemp("reports"), "collapsed", train_pool(val_wrong=True), collapsed_test())


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return run_train(tmp_path_factory.mktemp("reports"), "healthy", train_pool(val_wrong=False), healthy_test())


def epoch_rows(run_dir: Path) -> list[dict[str, str]]:
    """One dict per epoch that has a train/val_gap (the CSV logger writes val and train rows apart)."""
    (path,) = run_dir.glob("**/metrics.csv")
    epochs: dict[str, dict[str, str]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("epoch"):
                epochs.setdefault(row["epoch"], {}).update({k: v for k, v in row.items() if v})
    return [row for row in epochs.values() if "train/val_gap" in row]


def wandb_files(run_dir: Path) -> Path:
    (run,) = (run_dir / "wandb").glob("offline-run-*")
    return run / "files"


# ---- accuracy paradox -------------------------------------------------------------------------


def test_collapsed_class_raises_the_paradox_warning_with_worst_classes_and_confusions(collapsed) -> None:
    run_dir, log = collapsed
    metrics = read_metrics(run_dir)
    assert metrics["test/acc_top1"] == pytest.approx(0.78)
    assert metrics["test/paradox/warning"] == 1.0 and metrics["test/paradox/classes_below"] == 1.0
    assert metrics["test/paradox/recall_gap"] == pytest.approx(0.78)
    assert metrics["test/worst_recall/e"] == 0.0 and metrics["test/worst_recall/b"] == pytest.approx(0.9)
    confused = {k: v for k, v in metrics.items() if k.startswith("test/confused/")}
    assert confused == {"test/confused/e->a": 1.0, "test/confused/b->c": pytest.approx(0.1)}
    assert "ACCURACY PARADOX: test top-1 is 0.780 but 1 class(es) have recall <= 0.480" in log
    tables = {p.name.split("_")[0] for p in (wandb_files(run_dir) / "media" / "table" / "test").glob("*.table.json")}
    assert {"worst", "confused"} <= tables


def test_healthy_run_reports_no_paradox(healthy) -> None:
    run_dir, log = healthy
    metrics = read_metrics(run_dir)
    assert metrics["test/acc_top1"] == pytest.approx(0.95)
    assert metrics["test/paradox/warning"] == 0.0 and metrics["test/paradox/classes_below"] == 0.0
    assert "ACCURACY PARADOX" not in log


# ---- overfitting monitor ----------------------------------------------------------------------


def test_memorising_run_logs_the_gap_every_epoch_and_warns(collapsed) -> None:
    run_dir, log = collapsed
    rows = epoch_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for row in rows:
        # train: every image predicted right; val: every held-out image predicted wrong
        assert float(row["train/val_gap"]) == pytest.approx(1.0)
        assert float(row["train/val_loss_gap"]) == pytest.approx(
            float(row["val/loss"]) - float(row["train/loss_epoch"])
        )
    warning = "epoch 0: the model is memorising its training set: train top-1 is 1.000 above val top-1"
    assert (run_dir / "train.log").read_text().count("memorising") == 1  # said once, at the first epoch
    assert warning in (run_dir / "train.log").read_text()


def test_healthy_run_has_no_gap_and_no_warning(healthy) -> None:
    run_dir, log = healthy
    assert [float(r["train/val_gap"]) for r in epoch_rows(run_dir)] == [0.0, 0.0]
    assert "memorising" not in log


def test_early_stopping_on_the_gap_via_config(tmp_path: Path) -> None:
    run_dir, log = run_train(
        tmp_path,
        "stop",
        train_pool(val_wrong=True),
        healthy_test(),
        "trainer.max_epochs=5",
        "callbacks=[default,early_stopping]",
        "callbacks.early_stopping.monitor=train/val_gap",
        "callbacks.early_stopping.divergence_threshold=0.3",
    )
    assert read_metrics(run_dir)["epoch"] == 0  # stopped after the first epoch, not 5
    assert "Divergence threshold reached: train/val_gap" in log  # Lightning's EarlyStopping says why


# ---- calibration ------------------------------------------------------------------------------


def ece_by_hand(confidences: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """Guo et al.: equal-width bins of top-1 confidence, weighted |accuracy - confidence|."""
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = (confidences >= lo) & (confidences < hi)
        if members.any():
            total += members.sum() / len(confidences) * abs(correct[members].mean() - confidences[members].mean())
    return float(total)


def test_test_ece_equals_the_hand_computation_and_the_diagram_is_in_wandb(collapsed) -> None:
    run_dir, _ = collapsed
    labels, predicted, margins = collapsed_test()
    margins = np.rint(margins * 32) / 32  # as stored in the green channel
    confidence = np.exp(margins) / (np.exp(margins) + 4)
    assert read_metrics(run_dir)["test/ece"] == pytest.approx(ece_by_hand(confidence, predicted == labels), abs=1e-6)
    images = wandb_files(run_dir) / "media" / "images"
    assert list(images.glob("test/reliability_diagram_*.png")) and list(images.glob("val/reliability_diagram_*.png"))


# ---- misclassified examples -------------------------------------------------------------------


def test_worst_mistakes_table_is_capped_per_class_and_most_confident_first(collapsed) -> None:
    run_dir, _ = collapsed
    (path,) = (wandb_files(run_dir) / "media" / "table" / "test").glob("worst_mistakes_*.table.json")
    table = json.loads(path.read_text())
    assert table["columns"] == ["image", "true", "predicted", "confidence"]
    rows = table["data"]
    # b->c twice (margins 6, 5.5), then the three most confident of e's twenty e->a mistakes (cap 3)
    assert [(r[1], r[2]) for r in rows] == [("b", "c")] * 2 + [("e", "a")] * 3
    confidences = [r[3] for r in rows]
    assert confidences == sorted(confidences, reverse=True)
    e_margins = np.rint(np.linspace(1.0, 4.8, 20) * 32) / 32
    expected_e = np.sort(np.exp(e_margins) / (np.exp(e_margins) + 4))[::-1][:3]
    assert confidences[2:] == pytest.approx(expected_e.tolist(), abs=1e-5)
    assert confidences[:2] == pytest.approx([math.exp(m) / (math.exp(m) + 4) for m in (6.0, 5.5)], abs=1e-5)
    # offline, the thumbnails are the image list logged beside the table (one file per row; the
    # files are named by content hash, so the rows' images are all different here on purpose)
    thumbs = sorted((wandb_files(run_dir) / "media" / "images" / "test").glob("worst_mistakes_images_*.png"))
    assert len(thumbs) == len(rows)
    from PIL import Image

    # the thumbnails are the test images themselves (normalisation undone): red = 20 * predicted + 10
    reds = sorted(int(np.asarray(Image.open(t))[..., 0].mean().round()) for t in thumbs)
    assert reds == sorted([20 * CLASSES.index(r[2]) + 10 for r in rows])
