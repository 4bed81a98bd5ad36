"""Shared DataModule logic: splits, transforms, global batch size, samplers, loaders.

A dataset-specific subclass only says where its images and labels come from
(``prepare_data``, ``load_class_names``, ``load_train_pool``, ``load_test``); this class
turns them into the three splits and the DataLoaders, identically for every dataset.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from litvision.datamodules.sampling.exclusions import Exclusions
from litvision.datamodules.sampling.splits import stratified_split
from litvision.datamodules.transforms.pipeline import BatchNormalize
from litvision.utils.errors import ConfigError

log = logging.getLogger(__name__)

# ``sampler`` argument: called as sampler(targets=..., num_replicas=..., rank=..., seed=...).
SamplerFactory = Callable[..., Sampler]


def default_num_workers(devices_per_node: int) -> int:
    """Usable CPU cores per device on this node, minus one for the device's main process (max 16).

    Past ~16 workers per GPU a JPEG pipeline is limited by storage, not by decoding.
    """
    try:
        cpus = len(os.sched_getaffinity(0))  # respects taskset/cgroup CPU limits
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, min(16, cpus // max(1, devices_per_node) - 1))


@dataclass
class Splits:
    """The three datasets a run uses; each exposes ``targets`` and ``with_transform``."""

    train: Any
    val: Any
    test: Any

    def named(self) -> list[tuple[str, Any]]:
        return [("train", self.train), ("val", self.val), ("test", self.test)]

    def require(self, attribute: str, needed_for: str) -> None:
        """Refuse, in one line, splits without ``attribute`` (``needed_for`` says who needs it and the fix)."""
        for name, split in self.named():
            if not hasattr(split, attribute):
                raise ConfigError(f"the {name} split ({type(split).__name__}) has no `{attribute}`: {needed_for}")


class ClassificationDataModule(L.LightningDataModule):
    """Base class: train/val/test splits with per-split transforms and DDP-correct loaders.

    Args:
        data_dir: dataset root (layout depends on the subclass).
        batch_size: the *global* batch size; each of the ``world_size`` processes loads
            ``batch_size // world_size`` so a recipe means the same thing on 1 or 8 GPUs.
        num_workers: DataLoader worker processes per device, or ``auto``
            (:func:`default_num_workers`, resolved in ``setup`` once the device count is known).
        val_fraction: share of the training pool held out, stratified, for validation.
            0 means "validate on the test set" (logged as a warning: it leaks test data
            into model selection).
        split_seed: seed of the train/val split (fixed, independent of the training seed).
        seed: seed of the training sampler stream (shuffle/balanced sampling).
        train_transform / eval_transform: Albumentations pipelines (or any callable with the
            ``transform(image=...)["image"]`` protocol); train augmentation never reaches
            val/test.
        normalize: per-batch normalisation (``BatchNormalize`` or a ``{mean, std}`` mapping)
            applied on the device after transfer; None to skip.
        sampler: factory for the training sampler (``sampler=`` config group); None means
            plain shuffling.
        imbalance_factor: if set, the training split is subsampled to the standard
            exponential long-tailed profile (CIFAR-10-LT style); val/test stay balanced.
        exclude_ids: a file of sample ids to leave out of every split (one per line,
            ``#`` comments; see :mod:`litvision.datamodules.sampling.exclusions`), removed from the
            source splits before the val hold-out; e.g. the audit's clean-split list.
        repeated_augmentation: ``k > 1`` puts every training image ``k`` times in each global
            batch, each copy augmented separately (torchvision's ``--ra-reps``), on top of
            ``sampler``; see :mod:`litvision.datamodules.sampling.repeated_augmentation`. 1 = off.
    """

    def __init__(
        self,
        data_dir: str = "data/",
        batch_size: int = 128,
        num_workers: int | str = 2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        train_transform: Callable | None = None,
        eval_transform: Callable | None = None,
        normalize: BatchNormalize | Mapping[str, Any] | None = None,
        sampler: SamplerFactory | None = None,
        imbalance_factor: float | None = None,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = False,
        exclude_ids: str | None = None,
        repeated_augmentation: int = 1,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(
                f"dataset.batch_size={batch_size}: must be an integer >= 1 (the global batch), e.g. dataset.batch_size=128"
            )
        if num_workers not in ("auto", None) and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0
        ):
            raise ConfigError(
                f"dataset.num_workers={num_workers}: must be an integer >= 0 or auto, e.g. dataset.num_workers=2"
            )
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"dataset.val_fraction={val_fraction}: must be in [0, 1), e.g. dataset.val_fraction=0.1")
        self.data_dir = str(data_dir)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.seed = seed
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        if isinstance(normalize, Mapping):
            normalize = BatchNormalize(**normalize)
        self.normalize = normalize
        # An empty config node (``sampler=none``) means plain shuffling.
        self.sampler = sampler or None
        self.imbalance_factor = imbalance_factor
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.drop_last = drop_last
        self.exclude_ids = exclude_ids or None
        self.repeated_augmentation = int(repeated_augmentation)
        self._exclusions: Exclusions | None = None
        self.splits: Splits | None = None
        self._class_names: list[str] | None = None

    # ---- what a subclass provides -------------------------------------------------
    def load_class_names(self) -> list[str]:
        raise NotImplementedError

    def load_train_pool(self) -> Any:
        """The labelled training data before the val hold-out, without transforms."""
        raise NotImplementedError

    def load_test(self) -> Any:
        raise NotImplementedError

    def source_split(self, name: str) -> Any:
        """A source split (``train`` pool or ``test``) before any hold-out, without transforms,
        minus the ``exclude_ids``; prediction and the audit use these."""
        loaders = {"train": self.load_train_pool, "test": self.load_test}
        if name not in loaders:
            raise ConfigError(f"{type(self).__name__} has the source splits {sorted(loaders)}, not {name!r}")
        return self.without_excluded(loaders[name](), name)

    def without_excluded(self, dataset: Any, split: str) -> Any:
        """``dataset`` (a source split) minus the ids listed in ``exclude_ids``."""
        if self.exclude_ids is None:
            return dataset
        if self._exclusions is None:
            self._exclusions = Exclusions.from_file(self.exclude_ids)
        return self._exclusions.apply(dataset, split)

    def build_splits(self) -> Splits:
        """Default: stratified val hold-out from the training pool, official test set."""
        pool = self.source_split("train")
        test = self.source_split("test")
        if self.val_fraction == 0:
            log.warning(
                "val_fraction=0: validating on the TEST set. Checkpoint selection and early "
                "stopping will see test data, so test metrics are optimistic."
            )
            return Splits(train=pool, val=test, test=test)
        train_idx, val_idx = stratified_split(pool.targets, self.val_fraction, self.split_seed)
        return Splits(train=pool.subset(train_idx), val=pool.subset(val_idx), test=test)

    # ---- Lightning hooks ----------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Build the splits on every process (``prepare_data`` only downloads)."""
        if self.num_workers in ("auto", None):
            trainer = getattr(self, "trainer", None)
            self.num_workers = default_num_workers(trainer.num_devices if trainer is not None else 1)
            log.info("num_workers=auto: %d loader processes per device", self.num_workers)
        if self.splits is not None:
            self.check_split_sizes(stage)
            return
        splits = self.build_splits()
        if self._exclusions is not None:
            self._exclusions.warn_unmatched()
        if self.imbalance_factor is not None:
            from litvision.datamodules.sampling.longtail import long_tailed_indices

            keep = long_tailed_indices(splits.train.targets, self.imbalance_factor, num_classes=self.num_classes)
            splits.train = splits.train.subset(keep)
        splits.train = splits.train.with_transform(self.train_transform)
        splits.val = splits.val.with_transform(self.eval_transform)
        splits.test = splits.test.with_transform(self.eval_transform)
        self.splits = splits
        log.info(
            "%s: %d train / %d val / %d test images, %d classes",
            type(self).__name__,
            len(splits.train),
            len(splits.val),
            len(splits.test),
            self.num_classes,
        )
        self.check_split_sizes(stage)

    # Splits a stage reads. ``fit`` includes test: train.py tests right after fitting, and a
    # test split that cannot be evaluated is better refused before the training than after it.
    STAGE_SPLITS = {"fit": ("train", "val", "test"), "validate": ("val",), "test": ("test",), "predict": ()}

    def check_split_sizes(self, stage: str | None) -> None:
        """Refuse, before any training, a split that would break the run later.

        An empty validation split trains a whole run and then has no ``val/acc_best``; under DDP
        every process must evaluate at least one val/test image (Lightning's unpadded eval
        sampler gives each rank a disjoint share, and a rank without one cannot join the
        metric sync).
        """
        world_size, _ = self._world()
        for name in self.STAGE_SPLITS.get(stage, ("train", "val", "test")):
            size = len(getattr(self.splits, name))
            needed = 1 if name == "train" else world_size
            if size >= needed:
                continue
            if size == 0:
                message = f"the {name} split is empty: {self.split_size_hint(name)}"
            else:
                message = (
                    f"the {name} split has {size} image(s) for {world_size} processes (each must evaluate at "
                    f"least one): {self.split_size_hint(name)}, or run fewer processes (e.g. trainer.devices=1)"
                )
            raise ConfigError(f"{type(self).__name__} ({self.data_dir}): {message}")

    def split_size_hint(self, name: str) -> str:
        """How the user gets (more) images into split ``name``, for :meth:`check_split_sizes`."""
        if name == "val" and self.val_fraction > 0:
            return (
                f"dataset.val_fraction={self.val_fraction} holds out too few of the training images "
                "(rounded per class): raise it, e.g. dataset.val_fraction=0.1"
            )
        return "check dataset.data_dir and dataset.exclude_ids"

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            self._class_names = list(self.load_class_names())
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_class_counts(self) -> np.ndarray:
        """Images per class in the (possibly long-tailed) training split; losses use it."""
        self._require_setup()
        return np.bincount(self.splits.train.targets, minlength=self.num_classes)

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        world_size, rank = self._world()
        if self.repeated_augmentation > 1:
            # k copies of each image per global batch, on top of the chosen sampler's order
            from litvision.datamodules.sampling.repeated_augmentation import RepeatedAugmentationSampler

            sampler = RepeatedAugmentationSampler(
                self.splits.train.targets,
                batch_size=self.batch_size,
                repeats=self.repeated_augmentation,
                num_replicas=world_size,
                rank=rank,
                seed=self.seed,
                base=self.sampler,
            )
        elif self.sampler is not None:
            # Our samplers are distributed-aware (disjoint shares of one global stream
            # seeded by (seed, epoch)), so Lightning must not wrap them: see samplers.py.
            sampler = self.sampler(
                targets=self.splits.train.targets, num_replicas=world_size, rank=rank, seed=self.seed
            )
        else:
            # Also on one process: the order is a function of (seed, epoch) (Lightning calls
            # set_epoch), so a run resumed from a checkpoint sees the same batches as one
            # never interrupted; a RandomSampler's generator state is not in the checkpoint.
            sampler = DistributedSampler(
                self.splits.train,
                num_replicas=world_size,
                rank=rank,
                shuffle=True,
                seed=self.seed,
                drop_last=self.drop_last,
            )
        return self._loader(self.splits.train, sampler=sampler, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader:
        self._require_setup()
        return self._loader(self.splits.val, sampler=self._eval_sampler(self.splits.val))

    def test_dataloader(self) -> DataLoader:
        self._require_setup()
        return self._loader(self.splits.test, sampler=self._eval_sampler(self.splits.test))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise uint8 images once per batch, on the device."""
        images, targets = batch
        if self.normalize is not None:
            images = self.normalize(images)
        return images, targets

    # ---- helpers ------------------------------------------------------------------
    def per_device_batch_size(self) -> int:
        world_size, _ = self._world()
        if self.batch_size % world_size:
            raise ValueError(
                f"batch_size={self.batch_size} is the global batch and must be divisible by the "
                f"world size ({world_size} processes); pick e.g. dataset.batch_size="
                f"{max(world_size, self.batch_size // world_size * world_size)}"
            )
        return self.batch_size // world_size

    def _eval_sampler(self, dataset: Any) -> Sampler | None:
        """Unpadded distributed sampler so every val/test image is counted exactly once.

        torch's DistributedSampler pads the last batch with repeated images; those would
        be counted twice by the (cross-rank synced) torchmetrics. Lightning's own
        ``UnrepeatedDistributedSampler`` gives each rank a disjoint, unpadded share.
        """
        world_size, rank = self._world()
        if world_size == 1:
            return None
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        return UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)

    def _loader(self, dataset: Any, sampler: Sampler | None, drop_last: bool = False) -> DataLoader:
        # the workers mix it into their augmentation seed: ranks must not draw the same crops
        # (transforms.process_rank); it travels into the workers with the dataset
        dataset.rank = self._world()[1]
        return DataLoader(
            dataset,
            batch_size=self.per_device_batch_size(),
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            drop_last=drop_last,
            # a dataset may bring its own (e.g. FileListDataset drops unreadable eval images)
            collate_fn=getattr(dataset, "collate_fn", None),
        )

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def _require_setup(self) -> None:
        if self.splits is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before the dataloaders are requested")
