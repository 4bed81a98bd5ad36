"""Augmentation random streams: independent per loader worker AND per DDP rank, reproducible.

``seed_everything`` gives every DDP process the same seed, hence the same loader-worker seeds;
the per-worker Albumentations reseed (datamodules/transforms/pipeline.py) must mix in the global rank
or every rank draws identical crops and flips.
"""

from __future__ import annotations

import json
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from litvision.datamodules.cifar10 import CIFAR10DataModule
from litvision.datamodules.class_folder import ClassFolderDataModule
from litvision.datamodules.datasets.file_dataset import FileListDataset
from litvision.datamodules.readers.cifar_pickle import CIFAR10_DIRNAME, META_FILE, TEST_FILES, TRAIN_FILES
from tests.helpers.fake_cifar import CIFAR10_CLASSES, write_batch, write_meta
from tests.helpers.run_helpers import run_ddp_sim

FLIP = A.Compose([A.HorizontalFlip(p=0.5)])


def half_white(size: int = 16) -> np.ndarray:
    """Left half white, right half black: a horizontal flip is visible in pixel (0, 0)."""
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[:, : size // 2] = 255
    return image


def flipped(images: torch.Tensor) -> list[bool]:
    return [bool(image[0, 0, 0] < 128) for image in images]


def write_one_image_tree(root: Path, n: int = 64, classes: int = 2) -> None:
    """``root/{train,val}/<class>/*.png``: every file the same half-white image."""
    for split in ("train", "val"):
        for k in range(n if split == "train" else classes):
            folder = root / split / f"c{k % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(half_white()).save(folder / f"{k:03d}.png")


def write_constant_cifar(root: Path, n_per_class: int = 8) -> None:
    """A CIFAR-10 tree whose every image is the same (non-symmetric) picture: whatever differs
    between two batches was made by the augmentation."""
    picture = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    folder = root / CIFAR10_DIRNAME
    labels = np.arange(10 * n_per_class) % 10
    for name, part in zip(TRAIN_FILES, np.array_split(labels, len(TRAIN_FILES)), strict=True):
        write_batch(folder / name, np.repeat(picture, len(part), axis=0), part)
    write_batch(folder / TEST_FILES[0], np.repeat(picture, 10, axis=0), np.arange(10))
    write_meta(folder / META_FILE, CIFAR10_CLASSES)


def test_file_dataset_workers_draw_independent_augmentations(tmp_path: Path) -> None:
    """Forked workers inherit one Albumentations state: without the per-worker reseed in
    FileListDataset they flip in lockstep."""
    write_one_image_tree(tmp_path)
    names = [f"c{k % 2}/{k:03d}.png" for k in range(64)]
    dataset = FileListDataset(tmp_path / "train", names, [k % 2 for k in range(64)], FLIP)
    loader = DataLoader(dataset, batch_size=1, num_workers=2, shuffle=False, collate_fn=dataset.collate_fn)
    flips = [flipped(images)[0] for images, _ in loader]
    worker0, worker1 = flips[0::2], flips[1::2]  # batches alternate between the two workers
    assert worker0 != worker1
    assert 8 < sum(flips) < 56  # and each flip really is random


class FakeTrainer:
    """The two attributes the DataModule reads to shard its loaders."""

    def __init__(self, rank: int) -> None:
        self.world_size, self.global_rank = 2, rank


def rank_flips(datamodule, rank: int, seed: int) -> list[bool]:
    """Flip decisions of rank ``rank``'s first training epoch, loaded by a worker process."""
    datamodule.trainer = FakeTrainer(rank)
    torch.manual_seed(seed)  # what seed_everything does on every rank
    return [f for images, _ in datamodule.train_dataloader() for f in flipped(images)]


@pytest.mark.parametrize("kind", ["cifar", "class_folder"])
def test_datamodule_loaders_of_different_ranks_draw_different_augmentations(tmp_path: Path, kind: str) -> None:
    if kind == "cifar":
        folder = tmp_path / CIFAR10_DIRNAME
        labels = np.arange(80) % 10
        for name, part in zip(TRAIN_FILES, np.array_split(labels, len(TRAIN_FILES)), strict=True):
            write_batch(folder / name, np.repeat(half_white(32)[None], len(part), axis=0), part)
        write_batch(folder / TEST_FILES[0], np.repeat(half_white(32)[None], 10, axis=0), np.arange(10))
        write_meta(folder / META_FILE, CIFAR10_CLASSES)
        datamodule = CIFAR10DataModule(
            str(tmp_path), download=False, batch_size=8, num_workers=1, persistent_workers=False, train_transform=FLIP
        )
    else:
        write_one_image_tree(tmp_path)
        datamodule = ClassFolderDataModule(
            str(tmp_path),
            val_split="val",
            test_split="val",
            batch_size=8,
            num_workers=1,
            persistent_workers=False,
            progress=False,
            train_transform=FLIP,
            eval_transform=None,
        )
    datamodule.setup("fit")
    rank0, rank1 = rank_flips(datamodule, 0, seed=3), rank_flips(datamodule, 1, seed=3)
    assert len(rank0) == len(rank1) >= 32
    assert rank0 != rank1  # same seed, same (all identical) images: only the rank differs
    assert rank_flips(datamodule, 1, seed=3) == rank1  # and each rank's stream reproduces


def ddp_run(tmp_path: Path, data: Path, name: str, seed: int) -> dict[int, list[str]]:
    record = tmp_path / name
    run_ddp_sim(
        tmp_path / (name + "_run"),
        "trainer.max_epochs=1",
        f"seed={seed}",
        "test=false",
        f"dataset.data_dir={data}",
        "dataset.download=false",
        "dataset.num_workers=1",
        "dataset.batch_size=16",
        "augmentation=cifar_standard",
        "model=small_cnn",
        "model.backbone.width=8",
        "logger=none",
        "~callbacks.rich_progress_bar",
        "+callbacks.batch_hashes._target_=tests.helpers.batch_hash_recorder.BatchHashRecorder",
        f"+callbacks.batch_hashes.out_dir={record}",
    )
    return {rank: json.loads((record / f"hashes_epoch0_rank{rank}.json").read_text()) for rank in (0, 1)}


@pytest.mark.slow  # two 2-process runs (~50 s each on 2 busy cores); the loader-level test above is the fast check
def test_two_process_ddp_run_augments_each_rank_differently_and_reproduces(tmp_path: Path) -> None:
    """trainer=ddp_sim through train.py on a dataset of one repeated picture, random crop + flip:
    the batches' hashes differ between the ranks, and the same seed gives the same hashes."""
    write_constant_cifar(tmp_path / "data")
    first = ddp_run(tmp_path, tmp_path / "data", "first", seed=7)
    assert len(first[0]) == len(first[1]) >= 4
    assert not set(first[0]) & set(first[1]), "rank 0 and rank 1 drew the same crops and flips"
    again = ddp_run(tmp_path, tmp_path / "data", "again", seed=7)
    assert again == first
