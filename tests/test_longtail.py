"""CIFAR-10-LT: the exponential profile, the DataModule step that applies it, and tail reporting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from litvision.datamodules.sampling.longtail import long_tailed_counts, long_tailed_indices
from litvision.lightning_modules.metrics.collections import eval_metrics, flatten_results
from tests.helpers.fake_cifar import write_fake_cifar

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
REAL_CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-subset"


def formula(n_max: int, imbalance_factor: float, num_classes: int = 10) -> list[int]:
    return [int(n_max * imbalance_factor ** (-i / (num_classes - 1))) for i in range(num_classes)]


def test_counts_match_the_published_cifar10_lt_profiles() -> None:
    # Cao et al. 2019 / Cui et al. 2019 reference splits of the 50k CIFAR-10 training set.
    assert long_tailed_counts(5000, 100, 10) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert sum(long_tailed_counts(5000, 100, 10)) == 12406
    assert long_tailed_counts(5000, 10, 10) == [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]
    assert long_tailed_counts(5000, 1, 10) == [5000] * 10


def test_indices_keep_the_first_images_of_each_class_deterministically() -> None:
    targets = np.random.default_rng(0).permutation(np.repeat(np.arange(4), [30, 25, 40, 20]))
    keep = long_tailed_indices(targets, imbalance_factor=8)
    counts = np.bincount(targets[keep], minlength=4)
    assert counts.tolist() == formula(20, 8, 4) == [20, 10, 5, 2]
    for c, want in enumerate(counts):
        np.testing.assert_array_equal(keep[targets[keep] == c], np.flatnonzero(targets == c)[:want])
    np.testing.assert_array_equal(long_tailed_indices(targets, 8), keep)


def test_bad_profiles_fail_clearly() -> None:
    targets = np.repeat(np.arange(3), 5)
    with pytest.raises(ValueError, match="0 images"):
        long_tailed_indices(targets, imbalance_factor=10)
    with pytest.raises(ValueError, match="no training images"):
        long_tailed_indices(targets, imbalance_factor=2, num_classes=4)
    with pytest.raises(ValueError, match=">= 1"):
        long_tailed_counts(10, 0.5, 3)


def build_lt_datamodule(data_dir: Path, imbalance_factor: float, val_fraction: float = 0.1):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "dataset=cifar10_lt",
                f"dataset.data_dir={data_dir}",
                f"dataset.imbalance_factor={imbalance_factor}",
                f"dataset.val_fraction={val_fraction}",
                "dataset.download=false",
            ],
        )
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    return datamodule


@pytest.mark.parametrize("imbalance_factor, per_class", [(10, 100), (100, 200)])
def test_cifar10_lt_datamodule_counts_follow_the_formula(tmp_path, imbalance_factor, per_class) -> None:
    write_fake_cifar(tmp_path, n_train_per_class=per_class, n_test_per_class=6)
    datamodule = build_lt_datamodule(tmp_path, imbalance_factor)
    n_max = round(per_class * 0.9)  # after the stratified 10% val hold-out
    assert datamodule.train_class_counts.tolist() == formula(n_max, imbalance_factor)
    assert np.bincount(datamodule.splits.train.targets).tolist() == formula(n_max, imbalance_factor)
    # val and test stay balanced
    assert set(np.bincount(datamodule.splits.val.targets, minlength=10).tolist()) == {per_class - n_max}
    assert set(np.bincount(datamodule.splits.test.targets, minlength=10).tolist()) == {6}


def test_cifar10_lt_on_the_real_subset() -> None:
    if not (REAL_CIFAR / "cifar-10-batches-py" / "data_batch_1").is_file():
        pytest.skip(f"real CIFAR-10 subset not found at {REAL_CIFAR}")
    datamodule = build_lt_datamodule(REAL_CIFAR, 10)
    pool_counts = np.bincount(datamodule.splits.val.targets, minlength=10)  # val = round(10%) per class
    counts = datamodule.train_class_counts
    published_train = np.array([479, 479, 444, 448, 489, 435, 464, 477, 481, 464])  # shared/data README
    np.testing.assert_array_equal(pool_counts, np.round(published_train * 0.1))
    n_max = int((published_train - pool_counts).min())
    assert counts.tolist() == formula(n_max, 10)
    assert counts[0] / counts[-1] == pytest.approx(10, rel=0.05)


def confmat_results(confmat: torch.Tensor):
    """Feed predictions reproducing ``confmat`` (rows = true class) through the real metrics."""
    metrics = eval_metrics(len(confmat), "test/")
    preds, targets = [], []
    for true, row in enumerate(confmat.tolist()):
        for pred, n in enumerate(row):
            preds += [pred] * n
            targets += [true] * n
    logits = torch.nn.functional.one_hot(torch.tensor(preds), len(confmat)).float()
    metrics.update(logits, torch.tensor(targets))
    return metrics.compute()


def test_recall_tail_ranks_classes_by_training_counts() -> None:
    """On a balanced test set the tail must be the classes that were rare in TRAINING."""
    # 6 classes, 10 test images each; classes 4 and 5 (rare in training) are never recognised.
    confmat = torch.diag(torch.tensor([10, 10, 10, 10, 0, 0]))
    confmat[4, 0] = confmat[5, 0] = 10
    results = confmat_results(confmat)
    names = list("abcdef")
    train_counts = [500, 300, 200, 100, 20, 5]
    flat = flatten_results(results, "test/", names, class_counts=train_counts)
    assert flat["test/recall_tail"] == pytest.approx(0.0)  # rarest third = classes 5, 4
    assert flat["test/recall_min"] == pytest.approx(0.0)
    assert flat["test/balanced_acc"] == pytest.approx(4 / 6)
    # Head classes rare in training instead: the tail is then perfect.
    flat = flatten_results(results, "test/", names, class_counts=train_counts[::-1])
    assert flat["test/recall_tail"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="class_counts"):
        flatten_results(results, "test/", names, class_counts=[1, 2, 3])
