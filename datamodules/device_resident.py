"""Device-resident data: a whole in-memory dataset held as uint8 tensors on the training device.

For small images (CIFAR: 150 MB for all 50,000) a DataLoader that decodes, augments and
collates one image at a time in worker processes costs more than the training step. Here:

* every split lives as ONE uint8 (N, H, W, C) tensor (+ labels) on the device, moved there
  once, on the first batch (each DDP rank holds the whole tensor); an augmented training
  split is held reflect-padded, with its mirror image when flips are on
  (:meth:`BatchAugment.prepare`: 2.5-3x the bytes, for a ~10x faster gather);
* the DataLoaders stay the ordinary, sampler-driven ones of
  :class:`~litvision.datamodules.map_style.ClassificationDataModule` (shuffling and DDP
  sharding by ``DistributedSampler``, ``sampler=class_balanced|class_aware``, repeated
  augmentation, the unpadded ``UnrepeatedDistributedSampler`` for exact val/test), but
  their dataset yields only INDICES: a batch is an :class:`IndexBatch` of a few hundred
  integers, built in the main process (no workers) and copied to the device;
* ``on_after_batch_transfer`` gathers the batch's images from the resident tensor on the
  device and, for training batches, augments them there, batched
  (:mod:`litvision.datamodules.transforms.batch_augment`), then normalises. The model receives the
  usual ``(images, targets)``: metrics, logging, checkpoints and ``metrics.json`` are those
  of every other path.

Augmentation randomness: one generator per (seed, epoch, rank) on the device, reseeded at
every epoch's first batch, so an epoch's augmentations do not depend on what ran before
(a resumed run replays them exactly) and ranks draw independently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from litvision.datamodules.cifar10 import CIFAR10DataModule
from litvision.datamodules.transforms.batch_augment import BatchAugment, PaddedSplit
from litvision.utils.errors import ConfigError

log = logging.getLogger(__name__)


class IndexBatch(NamedTuple):
    """What the loaders of a device-resident DataModule yield: positions in one split."""

    split: str
    indices: torch.Tensor


class ResidentSplit(Dataset):
    """A split whose items are their own indices; the images stay in ``images`` (uint8 NHWC).

    ``targets`` (numpy) is what samplers, class counts and losses read, as for every dataset.
    """

    def __init__(self, name: str, images: np.ndarray | torch.Tensor, targets: np.ndarray) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} labels in split {name!r}")
        images = torch.as_tensor(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"split {name!r}: expected uint8 images (N, H, W, C), got {images.dtype} {tuple(images.shape)}"
            )
        self.name = name
        self.images = images
        self.targets = np.asarray(targets, dtype=np.int64)
        self.labels = torch.as_tensor(self.targets)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> int:
        return index

    def __getitems__(self, indices: list[int]) -> list[int]:
        return indices  # the DataLoader asks for a whole batch at once: no per-item calls

    def collate_fn(self, indices: list[int]) -> IndexBatch:
        return IndexBatch(self.name, torch.as_tensor(indices, dtype=torch.long))


class _OnDevice(NamedTuple):
    images: torch.Tensor | PaddedSplit  # uint8 (N, H, W, C); an augmented train split: BatchAugment.prepare's form
    labels: torch.Tensor  # int64 (N,)
    base_flips: torch.Tensor | None  # bool (N,), the per-image flip bits of flip="alternating"


class DeviceResidentMixin:
    """Turns an in-memory ``ClassificationDataModule`` (splits with ``images``/``targets``,
    e.g. :class:`~litvision.datamodules.datasets.array_dataset.ArrayDataset`) into a device-resident one.

    Args:
        batch_augment: :class:`BatchAugment` (or its arguments as a mapping) applied to training
            batches on the device; None = no training augmentation.
        **kwargs: everything else as for the DataModule it is mixed into; ``num_workers`` must be 0
            and the Albumentations ``train_transform``/``eval_transform`` must be None.
    """

    def __init__(
        self, *args: Any, batch_augment: BatchAugment | Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("num_workers", 0)
        kwargs.setdefault("persistent_workers", False)
        for key in ("train_transform", "eval_transform"):
            if kwargs.get(key) is not None:
                raise ConfigError(
                    f"{type(self).__name__} augments batches on the device, not with a per-image pipeline: "
                    f"drop the {key} (augmentation=cifar_batched, or augmentation.train=null augmentation.eval=null)"
                )
        if kwargs["num_workers"] not in (0, None):
            raise ConfigError(
                f"dataset.num_workers={kwargs['num_workers']}: the device-resident path has no loader workers "
                "(batches are index lists); set dataset.num_workers=0"
            )
        kwargs["num_workers"] = 0
        super().__init__(*args, **kwargs)
        if isinstance(batch_augment, Mapping):  # its arguments; an empty mapping means "off"
            batch_augment = BatchAugment(**batch_augment) if batch_augment else None
        self.batch_augment = batch_augment
        self._on_device: dict[str, _OnDevice] = {}
        self._generator: torch.Generator | None = None
        self._generator_key: tuple[int, int, str] | None = None

    # ---- splits -------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        super().setup(stage)
        self.splits.require(
            "images",
            f"{type(self).__name__} holds in-memory image arrays on the device "
            "(e.g. dataset=cifar10_device), not files",
        )
        for name, split in self.splits.named():
            setattr(self.splits, name, ResidentSplit(name, split.images, split.targets))

    def set_test_hook(self, hook: Any) -> None:
        """Refused: a test-time hook runs on decoded images in loader workers, which this path has none of."""
        if hook is not None:
            raise ConfigError(
                f"{type(self).__name__} keeps the images on the device, without loader workers, so "
                "robustness=corruptions cannot corrupt them there: evaluate with dataset=cifar10 (same data, same checkpoint)"
            )
        super().set_test_hook(hook)  # type: ignore[misc]

    # ---- Lightning hook: gather + augment on the device ------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not isinstance(batch, IndexBatch):
            return super().on_after_batch_transfer(batch, dataloader_idx)
        return self.gather(batch)

    def gather(self, batch: IndexBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, targets)`` of an index batch, on the indices' device: training batches
        translated/flipped (uint8), then normalised (float), then cut out."""
        indices = batch.indices
        resident = self._resident(batch.split, indices.device)
        augment = self.batch_augment if batch.split == "train" else None
        if augment is not None:
            epoch = self._epoch()
            generator = self._epoch_generator(indices.device, epoch)
            images = augment.views(resident.images, indices, epoch, resident.base_flips, generator)
        else:
            images = resident.images[indices].permute(0, 3, 1, 2)  # channels-last NCHW view
        if self.normalize is not None:
            images = self.normalize(images)
        if augment is not None:
            images = augment.after_normalize(images, generator)
        return images, resident.labels[indices]

    # ---- helpers ------------------------------------------------------------------
    def _resident(self, split: str, device: torch.device) -> _OnDevice:
        """The split's tensors on ``device``, moved there once (the first batch pays)."""
        cached = self._on_device.get(split)
        if cached is not None and cached.labels.device == device:
            return cached
        self._require_setup()
        data = getattr(self.splits, split)
        base_flips = None
        if split == "train" and self.batch_augment is not None and self.batch_augment.flip == "alternating":
            # identical on every rank (a function of the seed only): an image keeps its parity
            generator = torch.Generator().manual_seed(int(self.seed or 0))
            base_flips = (torch.rand(len(data), generator=generator) < 0.5).to(device)
        images = data.images.to(device)
        if split == "train" and self.batch_augment is not None:
            images = self.batch_augment.prepare(images)  # padded (+ mirrored): views are row crops
        cached = _OnDevice(images, data.labels.to(device), base_flips)
        self._on_device[split] = cached
        log.debug("%s split resident on %s: %s", split, device, type(cached.images).__name__)
        return cached

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    def _epoch_generator(self, device: torch.device, epoch: int) -> torch.Generator:
        """A generator seeded by (seed, epoch, rank), created at each epoch's first batch."""
        _, rank = self._world()
        key = (epoch, rank, str(device))
        if self._generator is None or self._generator_key != key:
            seed = int(np.random.SeedSequence([int(self.seed or 0), epoch, rank]).generate_state(1)[0])
            self._generator = torch.Generator(device=device).manual_seed(seed)
            self._generator_key = key
        return self._generator


class DeviceCIFAR10DataModule(DeviceResidentMixin, CIFAR10DataModule):
    """CIFAR-10 held on the training device, augmented there in batches (``dataset=cifar10_device``).

    Example (plain Lightning)::

        dm = DeviceCIFAR10DataModule(data_dir="data/", batch_size=512,
                                     batch_augment=BatchAugment(translate=2, flip="alternating"),
                                     normalize={"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]})
    """
