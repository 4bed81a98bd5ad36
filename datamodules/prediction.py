"""What ``predict.py`` feeds a model: one split of a dataset, or a plain folder of images.

Every item carries its position in the split instead of its label, so each prediction stays
tied to its sample id whatever the DDP sharding does and whichever unreadable files are
dropped; the writer (``callbacks/prediction_writer.py``) puts the rows back in split order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from litvision.datamodules.base import default_num_workers
from litvision.datamodules.datasets.file_dataset import FileListDataset, stack_images
from litvision.datamodules.readers.decode import (
    DEFAULT_MAX_IMAGE_PIXELS,
    BadImageError,
    check_image_size,
    check_pixel_budget,
)
from litvision.datamodules.transforms.pipeline import BatchNormalize
from litvision.utils.errors import ConfigError, DataError, MissingDataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
OUR_SPLITS = ("train", "val", "test")
SOURCE_PREFIX = "source_"


class PositionedDataset(Dataset):
    """Items ``(image, position)`` of a dataset with ``ids`` (and ``targets``); unreadable ones stay ``None``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int] | None:
        item = self.dataset[position]
        return None if item is None else (item[0], position)

    def collate(self, batch: list[tuple[torch.Tensor, int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
        kept = [item for item in batch if item is not None]
        if not kept:
            return torch.empty((0, 3, 1, 1), dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
        shapes = {tuple(image.shape) for image, _ in kept}
        if len(shapes) > 1:
            (a, pa), (b, pb) = kept[0], next(item for item in kept if tuple(item[0].shape) != tuple(kept[0][0].shape))
            raise ConfigError(
                f"images of different sizes in one batch ({self.dataset.ids[pa]}: {_hw(a)}, "
                f"{self.dataset.ids[pb]}: {_hw(b)}) and the eval preprocessing does not make them one size: "
                "choose an augmentation whose eval transform resizes and crops, e.g. augmentation=imagenet "
                "augmentation.resolution=<the training resolution>"
            )
        return stack_images([image for image, _ in kept]), torch.tensor([p for _, p in kept], dtype=torch.int64)


def _hw(image: torch.Tensor) -> str:
    return f"{image.shape[-2]}x{image.shape[-1]}"


def scan_images(folder: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of the JPEG/PNG files under ``folder`` (any nesting, sorted, no hidden files)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise MissingDataError(f"images={root}: no such folder (pass images=<folder of .jpg/.jpeg/.png files>)")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        found += [
            (rel / f).as_posix() for f in filenames if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)
        ]
    if not found:
        raise DataError(f"images={root}: no .jpg/.jpeg/.png files in it or below it")
    return sorted(found)


def require_one_size(root: Path, paths: list[str], max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """Without a resize in the eval preprocessing, every image must already have one size."""
    sizes: dict[tuple[int, int], str] = {}
    for path in paths:
        try:
            with open(root / path, "rb") as f:
                data = f.read()
            # the header only, and the verdict decoding will reach (a bomb has no size to compare)
            sizes.setdefault(check_image_size(data, max_image_pixels), path)
        except (OSError, BadImageError):
            continue  # unreadable: reported (and left out) when it is decoded
        if len(sizes) > 1:
            (wa, ha), a = next(iter(sizes.items()))
            (wb, hb), b = list(sizes.items())[1]
            raise ConfigError(
                f"images={root} holds images of different sizes ({a}: {wa}x{ha}, {b}: {wb}x{hb}) and the "
                "augmentation's eval transform is empty, so nothing resizes them: pass an augmentation that "
                "resizes, e.g. augmentation=imagenet augmentation.resolution=<the training resolution>"
            )


class PredictionDataModule(L.LightningDataModule):
    """One split to predict: ``split`` of the ``source`` DataModule, or every image under ``images``.

    Args:
        split: ``train`` | ``val`` | ``test`` (the splits a run with this dataset config uses,
            after the val hold-out and ``exclude_ids``) or ``source_<name>`` (a source split
            before any hold-out: ``source_train``/``source_test`` for CIFAR, a folder name for
            class folders/ImageNet, e.g. ``source_val``).
        images: a folder of JPEG/PNG images (any nesting) instead of a dataset; ids are the paths
            relative to it and there are no labels.
        source: the dataset's DataModule (``dataset=`` config); unused with ``images``.
        eval_transform / normalize: preprocessing of ``images`` (a dataset uses its own).
        batch_size: the global batch (divided by the number of processes).
        num_workers: loader processes per device (``auto``: cores per device - 1).
        max_image_pixels: pixel budget of ``images`` (bigger ones, or sides over 100:1, are left
            out as bad images before decoding); a dataset split uses its dataset's.
    """

    def __init__(
        self,
        split: str = "test",
        images: str | None = None,
        source: L.LightningDataModule | None = None,
        eval_transform: Callable | None = None,
        normalize: BatchNormalize | Mapping[str, Any] | None = None,
        batch_size: int = 128,
        num_workers: int | str = 0,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        super().__init__()
        if images is None and source is None:
            raise ConfigError("nothing to predict: pass images=<folder> or a dataset (dataset=... split=test)")
        if images is None and split not in OUR_SPLITS and not split.startswith(SOURCE_PREFIX):
            raise ConfigError(f"split={split!r}: use one of {OUR_SPLITS} or source_<name> (e.g. split=source_test)")
        self.split = split
        self.images = images
        self.source = source
        self.eval_transform = eval_transform
        self.normalize = BatchNormalize(**normalize) if isinstance(normalize, Mapping) else normalize
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.max_image_pixels = check_pixel_budget(max_image_pixels)
        self.dataset: Any = None
        self.has_labels = images is None

    @property
    def description(self) -> str:
        if self.images is not None:
            return f"images={self.images}"
        return f"{type(self.source).__name__}(data_dir={getattr(self.source, 'data_dir', '?')}) split={self.split}"

    @property
    def class_subset(self) -> tuple[int, ...] | None:
        """The classes the source set covers (ImageNet-R/-A), None for all (or for images=DIR)."""
        return None if self.source is None or self.images is not None else getattr(self.source, "class_subset", None)

    @property
    def class_names(self) -> list[str] | None:
        return None if self.source is None or self.images is not None else list(self.source.class_names)

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self.dataset.ids, dtype=str)

    @property
    def targets(self) -> np.ndarray | None:
        return np.asarray(self.dataset.targets) if self.has_labels else None

    def prepare_data(self) -> None:
        if self.images is None:
            self.source.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        dataset = self._images_dataset() if self.images is not None else self._split_dataset()
        self.dataset = dataset
        log.info("predicting %d images: %s", len(dataset), self.description)

    def _images_dataset(self) -> FileListDataset:
        root = Path(self.images).expanduser()
        paths = scan_images(root)
        if self.eval_transform is None:
            require_one_size(root, paths, self.max_image_pixels)
        return FileListDataset(
            root,
            paths,
            np.zeros(len(paths), np.int64),
            transform=self.eval_transform,
            replace_bad=False,
            max_image_pixels=self.max_image_pixels,
        )

    def _split_dataset(self) -> Any:
        source = self.source
        if self.split.startswith(SOURCE_PREFIX):
            dataset = source.source_split(self.split[len(SOURCE_PREFIX) :])
        else:
            source.setup("predict")
            dataset = getattr(source.splits, self.split)
        if not (hasattr(dataset, "ids") and hasattr(dataset, "with_transform")):
            # e.g. device-resident or streamed shards: batches of positions/records, no per-sample files
            raise ConfigError(
                f"{type(source).__name__} split {self.split!r} has no per-sample ids to predict from: use the plain "
                "dataset option on the same data (dataset=cifar10, dataset=imagenet, dataset=class_folder)"
            )
        # the eval preprocessing for every split (the train split included: no augmentation)
        dataset = dataset.with_transform(source.eval_transform)
        if hasattr(dataset, "for_evaluation"):
            dataset = dataset.for_evaluation()  # an unreadable file is left out, not replaced by another
        self.normalize = source.normalize
        return dataset

    def predict_dataloader(self) -> DataLoader:
        world_size, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        sampler = None
        if world_size > 1:
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            # disjoint, unpadded shares: every sample is predicted exactly once
            sampler = UnrepeatedDistributedSampler(self.dataset, num_replicas=world_size, rank=rank, shuffle=False)
        num_workers = self.num_workers
        if num_workers in ("auto", None):
            num_workers = default_num_workers(self.trainer.num_devices if self.trainer else 1)
        positioned = PositionedDataset(self.dataset)
        return DataLoader(
            positioned,
            batch_size=max(1, self.batch_size // world_size),
            sampler=sampler,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=positioned.collate,
            pin_memory=torch.cuda.is_available(),
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, positions = batch
        if self.normalize is not None and len(positions):
            images = self.normalize(images)
        return images, positions
