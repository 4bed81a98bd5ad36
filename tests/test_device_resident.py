"""The device-resident DataModule (datamodules/device_resident.py): index batches from the usual
samplers, images gathered (and augmented) after transfer, the same tensors as the standard path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from litvision.datamodules.cifar10 import CIFAR10DataModule
from litvision.datamodules.device_resident import DeviceCIFAR10DataModule, IndexBatch
from litvision.datamodules.sampling.samplers import ClassAwareSampler
from litvision.datamodules.transforms.batch_augment import BatchAugment
from litvision.utils.errors import ConfigError

NORMALIZE = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}


class FakeTrainer:
    """The attributes the DataModules read to know their place and epoch."""

    def __init__(self, world_size: int = 1, rank: int = 0, epoch: int = 0) -> None:
        self.world_size, self.global_rank, self.current_epoch = world_size, rank, epoch


def _device_dm(root, **kwargs) -> DeviceCIFAR10DataModule:
    kwargs.setdefault("batch_size", 16)
    dm = DeviceCIFAR10DataModule(data_dir=str(root), download=False, normalize=NORMALIZE, seed=3, **kwargs)
    dm.setup("fit")
    return dm


def _batches(dm, loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [dm.on_after_batch_transfer(batch, 0) for batch in loader]


def test_loaders_yield_index_batches_without_workers(fake_cifar_root) -> None:
    dm = _device_dm(fake_cifar_root)
    loader = dm.train_dataloader()
    assert loader.num_workers == 0
    batch = next(iter(loader))
    assert isinstance(batch, IndexBatch) and batch.split == "train"
    assert batch.indices.dtype == torch.long and batch.indices.shape == (16,)
    images, targets = dm.on_after_batch_transfer(batch, 0)
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(targets, torch.as_tensor(dm.splits.train.targets)[batch.indices])


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_unaugmented_batches_equal_the_standard_loader(fake_cifar_root, split: str) -> None:
    """Same splits, same sampler order, same normalisation: the same tensors, bit for bit."""
    device_dm = _device_dm(fake_cifar_root)
    standard = CIFAR10DataModule(
        data_dir=str(fake_cifar_root), download=False, normalize=NORMALIZE, seed=3, batch_size=16, num_workers=0
    )
    standard.setup("fit")
    ours = _batches(device_dm, getattr(device_dm, f"{split}_dataloader")())
    theirs = _batches(standard, getattr(standard, f"{split}_dataloader")())
    assert len(ours) == len(theirs) > 1
    for (image_a, target_a), (image_b, target_b) in zip(ours, theirs, strict=True):
        assert torch.equal(target_a, target_b)
        assert torch.equal(image_a, image_b)


def test_training_batches_are_augmented_reproducibly_per_epoch(fake_cifar_root) -> None:
    augment = BatchAugment(translate=2, flip="random", cutout=8)

    def epoch_batch(epoch: int) -> torch.Tensor:
        dm = _device_dm(fake_cifar_root, batch_augment=augment)
        dm.trainer = FakeTrainer(epoch=epoch)
        return dm.on_after_batch_transfer(IndexBatch("train", torch.arange(16)), 0)[0]

    plain = _device_dm(fake_cifar_root).on_after_batch_transfer(IndexBatch("train", torch.arange(16)), 0)[0]
    first = epoch_batch(0)
    assert not torch.equal(first, plain)
    assert torch.equal(first, epoch_batch(0))  # a function of (seed, epoch): a resumed epoch replays it
    assert not torch.equal(first, epoch_batch(1))
    assert (first == 0).all(dim=1).any()  # cutout squares (zero = the mean colour after normalisation)


def test_eval_batches_are_never_augmented(fake_cifar_root) -> None:
    dm = _device_dm(fake_cifar_root, batch_augment=BatchAugment(translate=4, flip="random", cutout=16))
    plain = _device_dm(fake_cifar_root)
    for split in ("val", "test"):
        batch = IndexBatch(split, torch.arange(8))
        assert torch.equal(dm.on_after_batch_transfer(batch, 0)[0], plain.on_after_batch_transfer(batch, 0)[0])


def _rank_indices(dm, rank: int, world_size: int, split: str) -> list[int]:
    dm.trainer = FakeTrainer(world_size=world_size, rank=rank)
    loader = getattr(dm, f"{split}_dataloader")()
    return [i for batch in loader for i in batch.indices.tolist()]


@pytest.mark.parametrize("world_size", [2, 4])
def test_ddp_shares_are_disjoint_and_eval_counts_every_image_once(fake_cifar_root, world_size: int) -> None:
    dm = _device_dm(fake_cifar_root, batch_size=8)
    train = [_rank_indices(dm, rank, world_size, "train") for rank in range(world_size)]
    assert len({len(share) for share in train}) == 1  # equal shares: no rank waits for another
    n_train = len(dm.splits.train)
    flat = sorted(i for share in train for i in share)
    assert set(flat) == set(range(n_train)) and len(flat) - n_train < world_size  # padded by < 1 per rank
    for split in ("val", "test"):
        seen = sorted(i for rank in range(world_size) for i in _rank_indices(dm, rank, world_size, split))
        assert seen == list(range(len(getattr(dm.splits, split))))  # unpadded: exact evaluation


def test_rebalancing_sampler_shares_follow_its_global_stream(fake_cifar_root) -> None:
    dm = _device_dm(fake_cifar_root, batch_size=8, sampler=lambda **kw: ClassAwareSampler(num_samples=64, **kw))
    targets = dm.splits.train.targets
    for rank in (0, 1):
        share = _rank_indices(dm, rank, 2, "train")
        reference = ClassAwareSampler(targets, num_replicas=2, rank=rank, seed=3, num_samples=64)
        assert share == list(reference)


def test_each_split_is_resident_once_per_device(fake_cifar_root) -> None:
    dm = _device_dm(fake_cifar_root)
    dm.on_after_batch_transfer(IndexBatch("test", torch.arange(4)), 0)
    resident = dm._on_device["test"].images
    dm.on_after_batch_transfer(IndexBatch("test", torch.arange(4, 8)), 0)
    assert dm._on_device["test"].images is resident
    assert resident.dtype == torch.uint8 and resident.shape == (len(dm.splits.test), 32, 32, 3)


def test_alternating_flip_bits_are_the_same_on_every_rank(fake_cifar_root) -> None:
    bits = []
    for rank in (0, 1):
        dm = _device_dm(fake_cifar_root, batch_augment={"translate": 0, "flip": "alternating"})
        dm.trainer = FakeTrainer(world_size=2, rank=rank)
        dm.on_after_batch_transfer(IndexBatch("train", torch.arange(4)), 0)
        bits.append(dm._on_device["train"].base_flips)
    assert torch.equal(bits[0], bits[1]) and 0 < int(bits[0].sum()) < len(bits[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_workers": 2}, "dataset.num_workers=0"),
        ({"train_transform": lambda image: {"image": image}}, "augmentation=cifar_batched"),
    ],
)
def test_per_image_settings_are_refused_with_the_fix(fake_cifar_root, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DeviceCIFAR10DataModule(data_dir=str(fake_cifar_root), download=False, **kwargs)


def test_real_subset_is_held_whole(cifar_subset_root) -> None:
    dm = DeviceCIFAR10DataModule(data_dir=str(cifar_subset_root), download=False, normalize=NORMALIZE)
    dm.setup("fit")
    images = dm.splits.train.images
    assert images.shape == (4194, 32, 32, 3) and images.dtype == torch.uint8
    assert np.bincount(dm.splits.train.targets).sum() == 4194


def test_a_file_dataset_is_refused_in_one_line(tmp_path) -> None:
    """The device-resident mixin needs in-memory arrays: on class folders it says so instead of failing later."""
    from litvision.datamodules.class_folder import ClassFolderDataModule
    from litvision.datamodules.device_resident import DeviceResidentMixin
    from tests.helpers.imagenet_trees import build_train, generated_samples

    class DeviceFolders(DeviceResidentMixin, ClassFolderDataModule):
        pass

    samples = generated_samples(tmp_path / "src", num_classes=2, per_class=3)
    build_train(tmp_path / "tree", samples)
    dm = DeviceFolders(
        str(tmp_path / "tree"),
        val_split="holdout",
        test_split="holdout",
        val_fraction=0.34,
        progress=False,
        batch_size=2,
    )
    with pytest.raises(ConfigError, match=r"the train split \(\w+\) has no `images`: DeviceFolders holds in-memory"):
        dm.setup("fit")


def test_the_audit_refuses_splits_without_sample_ids(fake_cifar_root) -> None:
    """The resident splits keep no ids: the audit names the plain option to audit the same files with."""
    from litvision.data_audit.sources import our_splits

    dm = DeviceCIFAR10DataModule(data_dir=str(fake_cifar_root), download=False, normalize=NORMALIZE)
    with pytest.raises(
        ConfigError, match=r"has no `ids`: DeviceCIFAR10DataModule keeps no sample ids.*dataset=cifar10 "
    ):
        our_splits(dm)
    plain = CIFAR10DataModule(data_dir=str(fake_cifar_root), download=False, normalize=NORMALIZE)
    assert set(our_splits(plain).values()) <= {"train", "val", "test", "val+test"}
