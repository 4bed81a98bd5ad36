"""What the audit reads: a dataset's source splits (before any hold-out) and where each sample lands
in the train/val/test split a run with the same config uses.

Source splits are the ones the dataset ships: CIFAR's official train and test files, ImageNet's
``train/`` and ``val/``, every split folder of a class-folder tree. Sample ids are the ones every
litvision tool uses (``train/<n>`` for CIFAR, the path under ``data_dir`` for file datasets).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from litvision.datamodules.class_folder import ClassFolderDataModule
from litvision.datamodules.imagenet import ImageNetDataModule
from litvision.datamodules.readers.decode import decode_image
from litvision.utils.errors import ConfigError

# where a source sample ends up in a run: our train / val / test split, or none (e.g. cut by the long tail)
UNUSED = "unused"


@dataclass
class SourceSplit:
    """One source split: ids, labels, and the dataset (no transform) the pixels come from."""

    name: str
    dataset: Any
    _positions: dict[str, int] | None = field(default=None, repr=False)

    def position(self, sample_id: str) -> int | None:
        """Where ``sample_id`` is in this split (None if it is not)."""
        if self._positions is None:
            self._positions = {str(sample_id): i for i, sample_id in enumerate(self.ids)}
        return self._positions.get(sample_id)

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self.dataset.ids, dtype=str)

    @property
    def targets(self) -> np.ndarray:
        return np.asarray(self.dataset.targets, dtype=np.int64)

    @property
    def is_files(self) -> bool:
        """Images are files on disk (health checks apply), not arrays in memory (CIFAR)."""
        return hasattr(self.dataset, "paths")

    def __len__(self) -> int:
        return len(self.dataset.targets)

    def path(self, index: int) -> str:
        return self.dataset.path(index)

    def image(self, index: int) -> np.ndarray:
        """The RGB uint8 image at ``index`` (raises BadImageError for an unreadable file)."""
        if not self.is_files:
            return np.asarray(self.dataset.images[index])
        with open(self.path(index), "rb") as f:
            return decode_image(f.read(), max_pixels=self.dataset.max_image_pixels)


@dataclass
class AuditData:
    """The dataset as the audit sees it."""

    class_names: list[str]
    splits: dict[str, SourceSplit]  # the training source split first
    datamodule: Any
    # sample id -> our split(s) ("train", "val", "test", "val+test", or UNUSED); built on demand
    _placement: dict[str, str] | None = field(default=None, repr=False)

    @property
    def train_split(self) -> str:
        return next(iter(self.splits))

    def placement(self) -> dict[str, str]:
        """Where every source sample lands in a run with this dataset config (the DataModule's own
        split logic: val hold-out with its split_seed, long-tail cut, exclude_ids)."""
        if self._placement is None:
            self._placement = our_splits(self.datamodule)
        return self._placement

    def our_targets(self) -> dict[str, np.ndarray]:
        """Labels of the train / val / test split a run uses."""
        self.placement()  # sets the DataModule up
        splits = self.datamodule.splits
        return {name: np.asarray(getattr(splits, name).targets) for name in ("train", "val", "test")}

    def our_split_of(self, sample_id: str) -> str:
        return self.placement().get(sample_id, UNUSED)

    def thumbnail(self, sample_id: str, size: int = 96) -> np.ndarray:
        """The RGB image of ``sample_id`` with its longest side at ``size`` px (for grids and W&B tables)."""
        split, position = self.locate(sample_id)
        image = split.image(position)
        scale = size / max(image.shape[:2])
        interpolation = cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA  # small images stay crisp
        shape = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        return cv2.resize(image, shape, interpolation=interpolation)

    def locate(self, sample_id: str) -> tuple[SourceSplit, int]:
        """(source split, position) of an id."""
        for split in self.splits.values():
            position = split.position(sample_id)
            if position is not None:
                return split, position
        raise KeyError(sample_id)


def source_split_names(datamodule: Any) -> list[str]:
    """The source splits of a DataModule, the training one first."""
    if isinstance(datamodule, ClassFolderDataModule):
        # ImageNet's test/ has no public labels; class-folder trees may hold any of the three
        candidates = ("train", "val") if isinstance(datamodule, ImageNetDataModule) else ("train", "val", "test")
        return [name for name in candidates if os.path.isdir(datamodule.split_dir(name))]
    return ["train", "test"]


def load_audit_data(datamodule: Any) -> AuditData:
    """Prepare (download/index) the data and open every source split."""
    if not hasattr(datamodule, "source_split"):
        raise ConfigError(f"{type(datamodule).__name__} is not a litvision classification DataModule: nothing to audit")
    datamodule.prepare_data()
    try:
        splits = {name: SourceSplit(name, datamodule.source_split(name)) for name in source_split_names(datamodule)}
    except NotImplementedError as e:  # e.g. WebDataset shards: a stream, not an indexable split
        raise ConfigError(
            f"{type(datamodule).__name__} has no source splits to audit: run the audit on the image files it was "
            "made from, e.g. dataset=imagenet dataset.data_dir=ROOT"
        ) from e
    return AuditData(class_names=list(datamodule.class_names), splits=splits, datamodule=datamodule)


def our_splits(datamodule: Any) -> dict[str, str]:
    """Sample id -> the split(s) of a run it belongs to (``val+test`` when val and test are one set)."""
    datamodule.setup("fit")
    datamodule.splits.require(
        "ids",
        f"{type(datamodule).__name__} keeps no sample ids, so the audit cannot say where a finding lands: audit "
        "the same files with the plain dataset option (e.g. dataset=cifar10 for dataset=cifar10_device)",
    )
    found: dict[str, list[str]] = {}
    for name, split in datamodule.splits.named():
        for sample_id in np.asarray(split.ids, dtype=str):
            names = found.setdefault(str(sample_id), [])
            if name not in names:
                names.append(name)
    return {sample_id: "+".join(names) for sample_id, names in found.items()}
