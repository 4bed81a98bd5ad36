"""The map-style DataModule base: splits, samplers, long tail and exclusions over indexable datasets.

A dataset-specific subclass (CIFAR-10, class folders, ImageNet) only says where its images and
labels come from (``prepare_data``, ``load_class_names``, ``load_train_pool``, ``load_test``, or
its own ``build_splits``); this class turns them into the three splits and the DataLoaders,
identically for every dataset. The global batch, auto workers and normalisation are the thin
base's (:class:`~litvision.datamodules.base.DataModuleBase`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from litvision.datamodules.base import DataModuleBase, Splits
from litvision.datamodules.sampling.exclusions import Exclusions
from litvision.datamodules.sampling.splits import stratified_split
from litvision.utils.errors import ConfigError

log = logging.getLogger(__name__)

# ``sampler`` argument: called as sampler(targets=..., num_replicas=..., rank=..., seed=...).
SamplerFactory = Callable[..., Sampler]


class ClassificationDataModule(DataModuleBase):
    """Base class: train/val/test splits with per-split transforms and DDP-correct loaders.

    Args:
        val_fraction: share of the training pool held out, stratified, for validation.
            0 means "validate on the test set" (logged as a warning: it leaks test data
            into model selection).
        split_seed: seed of the train/val split (fixed, independent of the training seed).
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
        **kwargs: the thin base's (:class:`~litvision.datamodules.base.DataModuleBase`): ``data_dir``,
            ``batch_size`` (global), ``num_workers``, ``seed``, transforms, ``normalize``, ...
    """

    def __init__(
        self,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        sampler: SamplerFactory | None = None,
        imbalance_factor: float | None = None,
        exclude_ids: str | None = None,
        repeated_augmentation: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"dataset.val_fraction={val_fraction}: must be in [0, 1), e.g. dataset.val_fraction=0.1")
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        # An empty config node (``sampler=none``) means plain shuffling.
        self.sampler = sampler or None
        self.imbalance_factor = imbalance_factor
        self.exclude_ids = exclude_ids or None
        self.repeated_augmentation = int(repeated_augmentation)
        self._exclusions: Exclusions | None = None

    # ---- what a subclass provides -------------------------------------------------
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
        self.resolve_num_workers()
        if self.splits is not None:
            self.check_split_sizes(stage)
            return
        splits = self.run_splits()
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

    def run_splits(self) -> Splits:
        """The train/val/test a run uses, untransformed: the source splits minus ``exclude_ids``, the
        val hold-out, and the long-tail cut of train. ``prepare_shards.py`` writes exactly these."""
        splits = self.build_splits()
        if self._exclusions is not None:
            self._exclusions.warn_unmatched()
        if self.imbalance_factor is not None:
            from litvision.datamodules.sampling.longtail import long_tailed_indices

            keep = long_tailed_indices(splits.train.targets, self.imbalance_factor, num_classes=self.num_classes)
            splits.train = splits.train.subset(keep)
        return splits

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

    def attach_groups(self, codes_for: Callable[[np.ndarray], np.ndarray]) -> dict[str, int]:
        """Val/test batches carry each sample's group codes (``codes_for(ids)``, -1 = none) as a third
        element (:class:`~litvision.datamodules.datasets.grouped.GroupedDataset`); returns the images
        with at least one group per split. Called after :meth:`setup`, before the loaders are built."""
        from litvision.datamodules.datasets.grouped import GroupedDataset

        self._require_setup()
        covered = {}
        for name in ("val", "test"):
            split = getattr(self.splits, name)
            if not isinstance(split, GroupedDataset):
                if not hasattr(split, "ids"):
                    raise ConfigError(f"groups=...: the {name} split ({type(split).__name__}) has no sample ids")
                split = GroupedDataset(split, codes_for(split.ids))
                setattr(self.splits, name, split)
            covered[name] = int((split.codes >= 0).any(dim=1).sum())
        return covered

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
        test = self.splits.test
        if self.test_hook is not None:  # set_test_hook: every image under every variant, in one pass
            from litvision.datamodules.datasets.variants import VariantDataset

            test = VariantDataset(test, self.test_hook)
        return self._loader(test, sampler=self._eval_sampler(test))

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
