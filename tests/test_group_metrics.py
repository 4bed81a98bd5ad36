"""Per-group metrics (groups=PATH): against scikit-learn on the same predictions, absent groups, the file
format, checkpoint selection by val/worst_group_acc, and single process = trainer=ddp_sim."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score

from litvision.datamodules.readers.group_file import read_group_file
from litvision.lightning_modules.metrics.groups import GroupCounts, group_summary
from litvision.utils.errors import DataError
from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.run_helpers import read_metrics, run_script

CLASSES = ["a", "b", "c", "d"]
TINY = ["model=small_cnn", "model.backbone.width=8", "dataset.num_workers=0", "dataset.batch_size=8"]


def write_groups(path: Path, rows: list[tuple[str, ...]], header=("id", "group")) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_group_metrics_match_scikit_learn(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, num_classes = 300, 4
    ids = np.array([f"test/{i}" for i in range(n)])
    targets = rng.integers(0, num_classes, n)
    preds = np.where(rng.random(n) < 0.6, targets, rng.integers(0, num_classes, n))
    color = rng.choice(["red", "blue", "green"], n, p=[0.6, 0.3, 0.1])
    size = rng.choice(["big", "small", ""], n)  # "": not in any size group
    rows = [(i, c, s) for i, c, s in zip(ids[:-10], color[:-10], size[:-10], strict=True)]  # 10 ids not in the file
    rows.append(("test/unused", "purple", "small"))  # a group with no sample in the split: absent
    table = read_group_file(write_groups(tmp_path / "g.csv", rows, ("id", "color", "size")))
    assert table.columns == ["color", "size"] and table.names[0] == ["blue", "green", "purple", "red"]

    metric = GroupCounts(table.num_groups, num_classes)
    codes = torch.as_tensor(table.codes_for(ids))
    for chunk in np.array_split(np.arange(n), 7):  # several batches
        metric.update(torch.as_tensor(preds[chunk]), torch.as_tensor(targets[chunk]), codes[chunk])
    flat = group_summary(metric.compute(), "test/", table.columns, table.names, CLASSES, draws=500)

    listed = np.isin(ids, [r[0] for r in rows])
    accuracies = []
    for column, values in (("color", color), ("size", size)):
        for name in sorted(set(values[listed]) - {""}):
            member = listed & (values == name)
            key = f"test/group/{column}/{name}/"
            assert flat[f"{key}n"] == member.sum()
            assert flat[f"{key}acc_top1"] == pytest.approx(accuracy_score(targets[member], preds[member]))
            assert flat[f"{key}balanced_acc"] == pytest.approx(balanced_accuracy_score(targets[member], preds[member]))
            recalls = recall_score(
                targets[member], preds[member], labels=range(num_classes), average=None, zero_division=0
            )
            for c, cls in enumerate(CLASSES):
                if (targets[member] == c).any():
                    assert flat[f"{key}recall/{cls}"] == pytest.approx(recalls[c])
                else:
                    assert math.isnan(flat[f"{key}recall/{cls}"])
            accuracies.append(accuracy_score(targets[member], preds[member]))
    assert flat["test/group/color/purple/n"] == 0 and math.isnan(flat["test/group/color/purple/acc_top1"])
    assert flat["test/worst_group_acc"] == pytest.approx(min(accuracies))
    overall = accuracy_score(targets, preds)
    assert flat["test/worst_group_gap"] == pytest.approx(overall - min(accuracies))
    low, high = flat["test/worst_group_acc_ci_low"], flat["test/worst_group_acc_ci_high"]
    assert low < flat["test/worst_group_acc"] < high and high - low < 0.5


def test_group_file_is_checked(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="header"):
        read_group_file(write_groups(tmp_path / "a.csv", [("x", "1")], header=("sample", "group")))
    with pytest.raises(DataError, match="is in groups"):
        read_group_file(write_groups(tmp_path / "b.csv", [("x", "1"), ("x", "2")]))
    with pytest.raises(DataError, match="fields"):
        read_group_file(write_groups(tmp_path / "c.csv", [("x", "1", "extra")]))


@pytest.fixture(scope="module")
def grouped_cifar(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """4 classes, 25 train-pool images each (val = 10% = 12 after rounding...), 5 test images each; groups:
    even/odd sample number, plus a group that only has train images (absent from val and test)."""
    root = tmp_path_factory.mktemp("grouped")
    write_fake_cifar(root / "cifar", n_train_per_class=25, n_test_per_class=5, class_names=CLASSES, seed=2)
    rows = [(f"test/{i}", "even" if i % 2 == 0 else "odd") for i in range(20)]
    rows += [(f"train/{i}", "even" if i % 2 == 0 else "odd") for i in range(100)]
    rows.append(("train/0", "even"))
    rows.append(("train/missing_from_every_split", "ghost"))
    return root / "cifar", write_groups(root / "groups.csv", rows)


def test_training_selects_the_checkpoint_by_worst_group_and_ddp_is_exact(grouped_cifar, tmp_path: Path) -> None:
    data, groups = grouped_cifar
    run = tmp_path / "train"
    common = [f"dataset.data_dir={data}", f"groups={groups}", *TINY]
    run_script(
        "train.py",
        *common,
        "trainer.max_epochs=3",
        "optimizer.lr=0.05",
        "logger=csv",
        "callbacks.model_checkpoint.monitor=val/worst_group_acc",
        f"hydra.run.dir={run}",
    )
    metrics = read_metrics(run)
    assert metrics["val/group/group/ghost/n"] == 0 and metrics["val/group/group/ghost/acc_top1"] is None
    assert metrics["test/group/group/ghost/n"] == 0
    assert metrics["test/group/group/even/n"] == metrics["test/group/group/odd/n"] == 10
    # the best checkpoint is the epoch with the highest val/worst_group_acc (first one on ties)
    per_epoch = {}
    for row in csv.DictReader(open(next(run.rglob("metrics.csv")))):
        if row.get("val/worst_group_acc"):
            per_epoch[int(row["epoch"])] = float(row["val/worst_group_acc"])
    assert len(per_epoch) == 3
    best_epoch = max(per_epoch, key=lambda e: (per_epoch[e], -e))
    assert (run / "checkpoints" / f"best_epoch{best_epoch:03d}.ckpt").exists()

    # eval.py of the best checkpoint: single process and trainer=ddp_sim (test: 20 images, val: 10, odd shares)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    best = run / "checkpoints" / "best.ckpt"
    run_script("eval.py", f"ckpt_path={best}", *common[:-1], f"hydra.run.dir={single}")
    proc = run_script("eval.py", f"ckpt_path={best}", *common[:-1], "trainer=ddp_sim", f"hydra.run.dir={ddp}")
    assert "Starting with 2 processes" in proc.stdout + proc.stderr
    one, two = read_metrics(single), read_metrics(ddp)
    keys = [k for k in one if "group" in k]
    assert len(keys) > 20
    assert all(one[k] == two[k] for k in keys), [(k, one[k], two[k]) for k in keys if one[k] != two[k]]
    assert one["test/worst_group_acc"] == metrics["test/worst_group_acc"]


def test_group_file_from_a_folder_level_or_a_file_name_pattern(tmp_path: Path) -> None:
    from litvision.datamodules.readers.group_file import groups_from_ids, main

    ids = ["train/cat/indoor/a_day.jpg", "train/cat/outdoor/b_night.jpg", "val/dog/c.jpg"]
    assert groups_from_ids(ids, level=2) == [(ids[0], "indoor"), (ids[1], "outdoor"), (ids[2], "")]
    assert [g for _, g in groups_from_ids(ids, pattern=r"_(day|night)\.")] == ["day", "night", ""]
    for name in ("train/cat/x_day.png", "train/dog/y_night.png", "val/cat/z_day.png"):
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "photos" / name).write_bytes(b"")
    main([str(tmp_path / "photos"), "--pattern", "_(day|night)[.]", "--out", str(tmp_path / "groups.csv")])
    table = read_group_file(tmp_path / "groups.csv")
    assert table.rows == {
        "train/cat/x_day.png": ("day",),
        "train/dog/y_night.png": ("night",),
        "val/cat/z_day.png": ("day",),
    }
