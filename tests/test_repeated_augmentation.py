"""Repeated augmentation: each image k times per global batch, disjoint rank shares of one
(seed, epoch) stream, composable with the re-balancing samplers."""

from __future__ import annotations

from collections import Counter
from functools import partial

import albumentations as A
import numpy as np
import pytest

from litvision.datamodules.sampling.repeated_augmentation import RepeatedAugmentationSampler
from litvision.datamodules.sampling.samplers import ClassAwareSampler, ClassBalancedSampler
from litvision.utils.errors import ConfigError

# long-tailed labels: 5 classes with 200, 80, 30, 12, 5 images
TARGETS = np.concatenate([np.full(n, c) for c, n in enumerate([200, 80, 30, 12, 5])])
BASES = {
    "none": None,
    "class_balanced": partial(ClassBalancedSampler, power=1.0),
    "class_aware": ClassAwareSampler,
}


def shares(world: int, repeats: int, batch: int, base=None, epoch: int = 0, seed: int = 3) -> list[list[int]]:
    samplers = [
        RepeatedAugmentationSampler(
            TARGETS, batch_size=batch, repeats=repeats, num_replicas=world, rank=r, seed=seed, base=base
        )
        for r in range(world)
    ]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    return [list(sampler) for sampler in samplers]


def global_batches(rank_shares: list[list[int]], batch: int) -> list[list[int]]:
    """Rebuild the global batches as the ranks' DataLoaders see them: per-device batch after batch."""
    per_rank = batch // len(rank_shares)
    steps = len(rank_shares[0]) // per_rank
    return [sum((s[t * per_rank : (t + 1) * per_rank] for s in rank_shares), []) for t in range(steps)]


@pytest.mark.parametrize("base", list(BASES))
@pytest.mark.parametrize(("world", "repeats"), [(2, 2), (2, 4), (4, 2), (4, 4), (4, 3)])
def test_rank_shares_partition_one_stream_with_each_image_k_times_per_batch(base, world, repeats) -> None:
    batch = 24 if repeats == 3 else 32
    rank_shares = shares(world, repeats, batch, BASES[base])
    assert len({len(s) for s in rank_shares}) == 1  # equal shares: no rank waits on another
    reference = RepeatedAugmentationSampler(TARGETS, batch_size=batch, repeats=repeats, seed=3, base=BASES[base])
    reference.set_epoch(0)
    stream = reference.global_stream().tolist()
    batches = global_batches(rank_shares, batch)
    # the ranks' shares are disjoint slices whose union, in order, is the one global stream
    assert sum(batches, []) == stream
    assert len(stream) >= len(TARGETS)  # a full epoch (padded to whole batches)
    draws = reference.distinct_stream().reshape(len(batches), -1)
    for global_batch, batch_draws in zip(batches, draws, strict=True):
        counts = Counter(global_batch)
        # every draw of the base order exactly k times in its global batch (a sampler that draws
        # with replacement can draw an image twice: then it is there 2k times)
        assert counts == Counter({i: repeats * n for i, n in Counter(batch_draws.tolist()).items()})
        if base == "none":
            assert set(counts.values()) == {repeats}
        if world >= repeats:  # as DeiT's sampler: the k copies of an image on k different ranks
            per_rank = batch // world
            for image in (i for i, n in counts.items() if n == repeats):
                assert len({p // per_rank for p, i in enumerate(global_batch) if i == image}) == repeats
    if base == "none":  # a permutation: no image twice in an epoch beyond its k copies
        distinct = [i for b in batches for i in dict.fromkeys(b)]
        assert len(distinct) == len(set(distinct))


@pytest.mark.parametrize("world", [1, 2, 4])
def test_per_device_neighbours_are_different_images(world) -> None:
    """Mixup/CutMix mix each image with its neighbour in the per-device batch: never its own copy."""
    for repeats in (2, 4):
        rank_shares = shares(world, repeats, 32)
        per_rank = 32 // world
        for share in rank_shares:
            for t in range(len(share) // per_rank):
                device_batch = share[t * per_rank : (t + 1) * per_rank]
                assert all(a != b for a, b in zip(device_batch, device_batch[1:], strict=False))


def test_one_stream_per_seed_and_epoch() -> None:
    first = shares(2, 4, 32, BASES["class_aware"], epoch=5)
    assert shares(2, 4, 32, BASES["class_aware"], epoch=5) == first  # reproducible (resume replays it)
    assert shares(2, 4, 32, BASES["class_aware"], epoch=6) != first  # a new stream every epoch
    assert shares(2, 4, 32, BASES["class_aware"], epoch=5, seed=4) != first


def test_balanced_base_sets_which_images_are_repeated() -> None:
    sampler = RepeatedAugmentationSampler(TARGETS, batch_size=64, repeats=4, seed=0, base=BASES["class_balanced"])
    classes = []
    for epoch in range(30):
        sampler.set_epoch(epoch)
        classes += TARGETS[sampler.distinct_stream()].tolist()
    shares_per_class = np.bincount(classes, minlength=5) / len(classes)
    assert np.allclose(shares_per_class, 0.2, atol=0.03)  # balanced, although the labels are long-tailed


def test_batch_size_must_be_a_multiple_of_k() -> None:
    with pytest.raises(ConfigError, match=r"dataset.batch_size=30"):
        RepeatedAugmentationSampler(TARGETS, batch_size=32, repeats=3)


def test_datamodule_gives_k_differently_augmented_copies(fake_cifar_root) -> None:
    from litvision.datamodules.cifar10 import CIFAR10DataModule

    augment = A.Compose([A.PadIfNeeded(40, 40, border_mode=4), A.RandomCrop(32, 32), A.HorizontalFlip()])
    dm = CIFAR10DataModule(
        data_dir=str(fake_cifar_root),
        batch_size=16,
        num_workers=0,
        download=False,
        train_transform=augment,
        repeated_augmentation=4,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, RepeatedAugmentationSampler)
    loader.sampler.set_epoch(0)
    indices = list(loader.sampler)[:16]
    images, _ = next(iter(loader))
    for index in set(indices):
        copies = [images[p] for p, i in enumerate(indices) if i == index]
        assert len(copies) == 4
        assert len({c.numpy().tobytes() for c in copies}) > 1, "the copies should be augmented differently"
