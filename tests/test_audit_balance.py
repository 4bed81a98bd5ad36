"""Class balance: counts per split (source and ours), imbalance ratio, effective numbers, the test-split warning."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from litvision.data_audit.balance import effective_classes, effective_numbers, imbalance_ratio, run_balance
from litvision.data_audit.sources import load_audit_data
from litvision.datamodules.cifar10 import CIFAR10DataModule
from litvision.datamodules.readers.cifar_pickle import CIFAR10_DIRNAME, load_split
from tests.helpers.fake_cifar import write_batch, write_fake_cifar


def test_summary_numbers() -> None:
    assert imbalance_ratio(np.array([10, 50, 20])) == 5.0
    assert imbalance_ratio(np.array([10, 0])) == float("inf")
    beta = 0.99
    assert effective_numbers(np.array([1, 100]), beta) == pytest.approx([1.0, (1 - beta**100) / (1 - beta)])
    assert effective_classes(np.array([5, 5, 5, 5])) == pytest.approx(4.0)
    assert 1.0 < effective_classes(np.array([97, 1, 1, 1])) < 1.3


def counts_in_csv(path: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["split"], {})[row["class"]] = int(row["count"])
    return out


def test_counts_per_source_and_run_split_and_the_imbalanced_test_warning(tmp_path) -> None:
    cifar = write_fake_cifar(tmp_path, n_train_per_class=20, n_test_per_class=6, seed=0)
    images, labels = load_split(cifar, train=False)
    keep = np.flatnonzero((labels != 3) | (np.cumsum(labels == 3) <= 1))  # class 3 keeps 1 test image of 6
    write_batch(cifar / "test_batch", images[keep], labels[keep])
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=False, num_workers=0, val_fraction=0.1, imbalance_factor=4)
    data = load_audit_data(dm)
    section = run_balance(data, tmp_path / "out", beta=0.999, max_test_imbalance=1.5)

    counts = counts_in_csv(tmp_path / "out" / "balance.csv")
    names = data.class_names
    _, train_labels = load_split(cifar, train=True)
    assert [counts["source train"][n] for n in names] == np.bincount(train_labels, minlength=10).tolist()
    assert [counts["source test"][n] for n in names] == np.bincount(labels[keep], minlength=10).tolist()
    dm.setup("fit")  # our splits: the long-tailed training split, the val hold-out
    for split in ("train", "val", "test"):
        expected = np.bincount(getattr(dm.splits, split).targets, minlength=10).tolist()
        assert [counts[split][n] for n in names] == expected
    ours = np.bincount(dm.splits.train.targets, minlength=10)
    assert (
        section.metrics["balance/train/imbalance_ratio"] == pytest.approx(ours.max() / ours.min())
        and ours.max() / ours.min() > 3
    )
    assert section.metrics["balance/source_train/imbalance_ratio"] == pytest.approx(1.0)
    assert section.metrics["balance/test/imbalance_ratio"] == pytest.approx(6.0)
    assert section.metrics["balance/test_imbalance_warning"] == 1.0
    assert any("accuracy paradox" in w and names[3] in w for w in section.warnings)
    assert (tmp_path / "out" / "balance.png").stat().st_size > 1000


def test_a_balanced_test_split_gives_no_warning(tmp_path) -> None:
    write_fake_cifar(tmp_path, n_train_per_class=10, n_test_per_class=4)
    data = load_audit_data(CIFAR10DataModule(data_dir=str(tmp_path), download=False, num_workers=0))
    section = run_balance(data, tmp_path / "out")
    assert not section.warnings and section.metrics["balance/test_imbalance_warning"] == 0.0
    assert (tmp_path / CIFAR10_DIRNAME).is_dir()
