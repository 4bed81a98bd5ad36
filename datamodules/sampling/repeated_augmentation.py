"""Repeated augmentation: every image ``k`` times in each global batch, each copy augmented apart.

Hoffer et al. 2020 ("Augment your batch") and Berman et al. 2019 (multi-grain) put ``k``
differently augmented copies of each image in the same batch; DeiT's ``RASampler`` (used by
torchvision's ``--ra-sampler --ra-reps k``) and timm's ``RepeatAugSampler`` do it under DDP by
spreading the copies over the ranks. An epoch keeps its usual length (about ``len / k``
distinct images, each ``k`` times), as theirs.

How the stream is built (``dataset.repeated_augmentation=k``, ``datamodules/base.py``):

* the *distinct* images of the epoch come from the base sampler's stream for (seed, epoch)
  (``sampler=class_balanced|class_aware``; a plain permutation for ``sampler=none``), built on
  every rank as for one process, so all ranks agree on it;
* global batch ``t`` takes the next ``M = batch_size / k`` of them and lays them out as ``k``
  rounds ``[i_1..i_M, i_1..i_M, ...]``: each image exactly ``k`` times per global batch;
* rank ``r`` takes the ``r``-th contiguous slice (its per-device batch) of every global batch:
  the shares are disjoint and their union is the stream. Copies sit ``M`` apart, so with at
  least ``k`` ranks every copy is on a different rank (as DeiT's sampler), and on any number
  of ranks neighbouring images of a per-device batch are different images (Mixup/CutMix mix
  each image with its neighbour: never with a copy of itself).

It subclasses ``DistributedSampler`` so Lightning neither wraps nor replaces it and calls its
``set_epoch`` every epoch: see the docstring of ``datamodules/sampling/samplers.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import cast

import numpy as np
from torch.utils.data import DistributedSampler

from litvision.utils.errors import ConfigError


class RepeatedAugmentationSampler(DistributedSampler):
    """Each image ``repeats`` times per global batch; one stream per (seed, epoch), sharded by rank.

    Args:
        targets: labels of the training items (only their number matters without ``base``).
        batch_size: the GLOBAL batch size (all ranks together); a multiple of ``repeats`` and
            of ``num_replicas``.
        repeats: copies of each image per batch (``k``).
        num_replicas / rank: world size and this process's global rank.
        seed: shared by all ranks; the epoch's stream is a function of (seed, epoch).
        base: optional sampler factory (``sampler=`` group), called as for one process
            (``num_replicas=1, rank=0``); its order supplies the distinct images and its length
            the epoch length.
    """

    def __init__(
        self,
        targets: Sequence[int] | np.ndarray,
        batch_size: int,
        repeats: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int | None = 0,
        base: Callable[..., DistributedSampler] | None = None,
    ) -> None:
        targets = np.asarray(targets)
        if len(targets) == 0:
            raise ValueError("repeated augmentation needs a non-empty training set")
        if repeats < 1:
            raise ConfigError(f"dataset.repeated_augmentation must be >= 1, got {repeats}")
        if batch_size % repeats:
            raise ConfigError(
                f"dataset.repeated_augmentation={repeats} puts each image {repeats} times in a batch, so the global "
                f"batch must be a multiple of it; got dataset.batch_size={batch_size}: use e.g. "
                f"dataset.batch_size={max(repeats, batch_size // repeats * repeats)}"
            )
        if batch_size % num_replicas:
            raise ConfigError(f"dataset.batch_size={batch_size} must be divisible by the world size {num_replicas}")
        if seed is None:
            if num_replicas > 1:
                raise ConfigError(
                    "repeated augmentation under DDP needs an integer seed shared by all ranks: set seed=<int>"
                )
            seed = int(cast(int, np.random.SeedSequence().entropy) % 2**31)
        # ``targets`` stands in for the dataset: DistributedSampler only needs its len()
        super().__init__(targets, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed))  # type: ignore[arg-type]
        self.targets = targets
        self.batch_size = int(batch_size)
        self.repeats = int(repeats)
        self.distinct_per_batch = self.batch_size // self.repeats
        self.per_rank_batch = self.batch_size // num_replicas
        self.base = None if base is None else base(targets=targets, num_replicas=1, rank=0, seed=int(seed))
        epoch_length = len(targets) if self.base is None else len(self.base)
        distinct = -(-epoch_length // self.repeats)
        self.num_batches = max(1, -(-distinct // self.distinct_per_batch))
        self.total_size = self.num_batches * self.batch_size
        self.num_samples = self.total_size // num_replicas

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if self.base is not None and hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def distinct_stream(self) -> np.ndarray:
        """The epoch's distinct images, ``num_batches * M`` of them (the base order, or a permutation)."""
        if self.base is None:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.targets))
        else:
            order = np.fromiter(iter(self.base), dtype=np.int64)
        return np.resize(order, self.num_batches * self.distinct_per_batch)  # repeats itself if short

    def global_stream(self) -> np.ndarray:
        """All ranks' indices this epoch, global batch after global batch (identical on every rank)."""
        distinct = self.distinct_stream().reshape(self.num_batches, self.distinct_per_batch)
        return np.tile(distinct, (1, self.repeats)).reshape(-1)

    def __iter__(self) -> Iterator[int]:
        batches = self.global_stream().reshape(self.num_batches, self.num_replicas, self.per_rank_batch)
        return iter(batches[:, self.rank, :].reshape(-1).tolist())

    def __len__(self) -> int:
        return self.num_samples
