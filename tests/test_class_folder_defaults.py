"""`dataset=class_folder` works on an ordinary JPEG tree as it comes (images of many sizes).

It used to compose CIFAR's augmentation (no eval resize), and the first val batch died in
``default_collate`` with "Trying to resize storage that is not resizable" (109 lines). Now the
option selects the ImageNet augmentation (resize + crop) unless the command line picks another,
and an augmentation that leaves images of different sizes stops with one line saying so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from litvision.datamodules.datasets.file_dataset import collate_skipping_bad
from litvision.launch.resolvers import register_resolvers
from litvision.utils.errors import DataError
from tests.helpers.imagenet_trees import age_tree, build_train, build_val, real_samples
from tests.helpers.run_helpers import TINY_MODEL, run_script

CONF = Path(__file__).resolve().parents[1] / "conf"


def composed(overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)


def test_class_folder_selects_the_imagenet_augmentation():
    cfg = composed(["dataset=class_folder", "dataset.data_dir=/x"])
    assert cfg.augmentation.train.transforms[0]._target_ == "albumentations.RandomResizedCrop"
    assert cfg.augmentation.eval.transforms[0]._target_ == "albumentations.SmallestMaxSize"
    assert cfg.augmentation.normalize.mean == [0.485, 0.456, 0.406]


def test_class_folder_picks_a_photo_model_and_batch():
    """The CIFAR ResNet-9 at 224 px and batch 128 took 9.95 GB of RAM on 100 photos: photo folders
    get a backbone made for 224-px inputs and a batch that fits a laptop."""
    cfg = composed(["dataset=class_folder", "dataset.data_dir=/x"])
    assert cfg.model.backbone.name == "resnet18"
    assert cfg.dataset.batch_size == 32


@pytest.mark.parametrize("order", ["before", "after"])
def test_an_augmentation_on_the_command_line_wins(order):
    pick, dataset = ["augmentation=cifar_standard"], ["dataset=class_folder", "dataset.data_dir=/x"]
    cfg = composed(pick + dataset if order == "before" else dataset + pick)
    assert cfg.augmentation.train.transforms[0]._target_ == "albumentations.PadIfNeeded"
    assert cfg.augmentation.eval is None


@pytest.mark.parametrize("order", ["before", "after"])
def test_a_model_and_batch_on_the_command_line_win(order):
    pick, dataset = ["model=resnet50", "dataset.batch_size=8"], ["dataset=class_folder", "dataset.data_dir=/x"]
    cfg = composed(pick + dataset if order == "before" else dataset + pick)
    assert cfg.model.backbone.name == "resnet50" and cfg.dataset.batch_size == 8


def real_jpeg_tree(tmp_path: Path, classes: int = 6) -> Path:
    """ROOT/{train,val}/<wnid>/*.JPEG from the real sample JPEGs: sizes as they come (375x500, 263x376, ...)."""
    samples = real_samples()[:classes]
    sizes = {Image.open(path).size for _, path in samples}
    assert len(sizes) > 3  # really a tree of mixed sizes
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples, "folders")
    age_tree(root)
    return root


def test_train_py_on_a_real_jpeg_tree_of_mixed_sizes_with_the_default_augmentation(tmp_path: Path):
    root = real_jpeg_tree(tmp_path)
    run_dir = tmp_path / "run"
    run_script(
        "train.py",
        "dataset=class_folder",
        f"dataset.data_dir={root}",
        *TINY_MODEL,
        "dataset.batch_size=4",
        "dataset.progress=false",
        "logger=none",
        "trainer.max_epochs=1",  # the default resolution: 224
        f"hydra.run.dir={run_dir}",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "test/acc_top1" in metrics and "val/acc_best" in metrics


def test_an_augmentation_that_leaves_mixed_sizes_stops_with_one_line(tmp_path: Path):
    """augmentation=none keeps every image at its own size: refused at the first batch, from a
    loader worker process, as one line naming the cause and the fix."""
    root = real_jpeg_tree(tmp_path)
    done = run_script(
        "train.py",
        "dataset=class_folder",
        f"dataset.data_dir={root}",
        "augmentation=none",
        *TINY_MODEL,
        "dataset.num_workers=2",
        "dataset.batch_size=4",
        "dataset.progress=false",
        "logger=none",
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("DataError: images of different sizes in one batch"), done.stderr[-3000:]
    assert "augmentation=imagenet" in last and "Traceback" not in done.stderr


def test_collate_refuses_mixed_sizes_in_the_main_process_too():
    items = [(torch.zeros(3, 32, 40, dtype=torch.uint8), 0), (torch.zeros(3, 40, 32, dtype=torch.uint8), 1)]
    with pytest.raises(DataError, match=r"32x40 and 40x32 pixels"):
        collate_skipping_bad(items)
