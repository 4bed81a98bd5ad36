"""Splits that would break a run later are refused in setup, before any training.

An empty validation split used to train a whole run and then fail with ``KeyError:
val/acc_best``; under DDP a val/test split with fewer images than processes ended in a bare
``AssertionError`` (Lightning's unpadded eval sampler) and a gloo error on the other rank.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litvision.datamodules.cifar10 import CIFAR10DataModule
from litvision.datamodules.class_folder import ClassFolderDataModule
from litvision.utils.errors import ConfigError
from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.run_helpers import TINY_MODEL, run_script

ROOT = Path(__file__).resolve().parents[1]


class FakeTrainer:
    """The attributes the DataModule reads from its trainer."""

    def __init__(self, world_size: int) -> None:
        self.world_size, self.global_rank, self.num_devices = world_size, 0, world_size


def class_folder_tree(root: Path, train: int = 8, val: int = 1, classes: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for k in range(n):
            folder = root / split / f"c{k % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{k}.jpg")
    return root


def test_empty_val_split_fails_in_setup_through_train_py_before_training(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path / "data", n_train_per_class=20, n_test_per_class=2)
    run_dir = tmp_path / "run"
    done = run_script(
        "train.py",
        *TINY_MODEL,
        f"dataset.data_dir={tmp_path / 'data'}",
        "dataset.download=false",
        "dataset.val_fraction=0.001",
        "logger=none",
        "trainer.max_epochs=1",
        f"hydra.run.dir={run_dir}",
        check=False,
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ConfigError: ") and "val split is empty" in last and "dataset.val_fraction=" in last, (
        done.stderr[-3000:]
    )
    assert "Traceback" not in done.stderr
    assert not (run_dir / "checkpoints").exists()  # refused before the first epoch


def test_class_folder_holdout_that_rounds_to_nothing_names_both_fixes(tmp_path: Path) -> None:
    root = class_folder_tree(tmp_path, train=8, val=2)
    dm = ClassFolderDataModule(
        str(root), val_split="holdout", test_split="val", val_fraction=0.01, batch_size=2, num_workers=0, progress=False
    )
    with pytest.raises(ConfigError, match="val split is empty") as error:
        dm.setup("fit")
    assert "dataset.val_fraction" in str(error.value) and "dataset.val_split=val" in str(error.value)


def test_eval_split_smaller_than_the_world_size_is_refused_with_both_sizes(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path, n_train_per_class=20, n_test_per_class=1)  # 10 test images
    keep = 3
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("".join(f"test/{n}\n" for n in range(keep, 10)))
    dm = CIFAR10DataModule(str(tmp_path), download=False, batch_size=4, num_workers=0, exclude_ids=str(exclude))
    dm.trainer = FakeTrainer(world_size=4)
    with pytest.raises(ConfigError, match=r"test split has 3 image\(s\) for 4 processes"):
        dm.setup("fit")  # fit checks test too: train.py tests right after fitting
    with pytest.raises(ConfigError, match="trainer.devices"):
        dm.setup("test")
    dm.trainer = FakeTrainer(world_size=3)
    dm.setup("test")  # one image per process is enough
    assert len(dm.splits.test) == 3


def test_ddp_run_with_fewer_val_images_than_processes_ends_with_one_clear_line(tmp_path: Path) -> None:
    root = class_folder_tree(tmp_path / "tree", train=8, val=1)
    command = [
        sys.executable,
        "train.py",
        "trainer=ddp_sim",
        "dataset=class_folder",
        f"dataset.data_dir={root}",
        "augmentation=imagenet",
        "augmentation.resolution=32",
        "dataset.progress=false",
        *TINY_MODEL,
        "dataset.batch_size=4",
        "logger=none",
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("ConfigError: ")]
    assert errors, done.stderr[-3000:]
    assert "val split has 1 image(s) for 2 processes" in errors[0] and "dataset.val_split=holdout" in errors[0]
    assert "AssertionError" not in done.stderr and "Traceback" not in done.stderr
