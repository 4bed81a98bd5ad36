"""The CIFAR-10 DataModule: splits, class names, transforms per split, batch semantics."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from litvision.datamodules.cifar10 import CIFAR10DataModule
from litvision.datamodules.transforms.pipeline import BatchNormalize


def make_dm(root, **kwargs) -> CIFAR10DataModule:
    kwargs.setdefault("num_workers", 0)
    dm = CIFAR10DataModule(data_dir=str(root), download=False, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_stratified_split_is_disjoint_balanced_and_seeded(fake_cifar_root) -> None:
    dm = make_dm(fake_cifar_root, val_fraction=0.25, split_seed=3)
    train, val = dm.splits.train, dm.splits.val
    assert len(train) + len(val) == 200
    assert np.bincount(val.targets, minlength=10).tolist() == [5] * 10
    assert np.bincount(train.targets, minlength=10).tolist() == [15] * 10
    # No image is in both splits (images are distinct random noise).
    train_rows = {img.tobytes() for img in train.images}
    assert not any(img.tobytes() in train_rows for img in val.images)
    again = make_dm(fake_cifar_root, val_fraction=0.25, split_seed=3)
    assert np.array_equal(again.splits.val.images, val.images)
    other = make_dm(fake_cifar_root, val_fraction=0.25, split_seed=4)
    assert not np.array_equal(other.splits.val.images, val.images)


def test_val_fraction_zero_validates_on_test_and_warns(fake_cifar_root, caplog) -> None:
    with caplog.at_level("WARNING"):
        dm = make_dm(fake_cifar_root, val_fraction=0.0)
    assert len(dm.splits.val) == len(dm.splits.test) == 70
    assert "TEST set" in caplog.text


def test_class_names_come_from_batches_meta(fake_cifar_root) -> None:
    dm = make_dm(fake_cifar_root)
    assert dm.class_names[:3] == ["airplane", "automobile", "bird"]
    assert dm.num_classes == 10


def test_train_augmentation_never_reaches_eval_splits(fake_cifar_root) -> None:
    flip_all = A.Compose([A.HorizontalFlip(p=1.0)])
    dm = make_dm(fake_cifar_root, train_transform=flip_all, eval_transform=None)
    image, _ = dm.splits.train[0]
    raw = torch.from_numpy(dm.splits.train.images[0]).permute(2, 0, 1)
    assert torch.equal(image, raw.flip(-1))
    for split in (dm.splits.val, dm.splits.test):
        image, _ = split[0]
        assert torch.equal(image, torch.from_numpy(split.images[0]).permute(2, 0, 1))


def test_loader_yields_uint8_batches_normalised_after_transfer(fake_cifar_root) -> None:
    normalize = BatchNormalize(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    dm = make_dm(fake_cifar_root, batch_size=16, normalize=normalize)
    images, targets = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (16, 3, 32, 32)
    normed, same_targets = dm.on_after_batch_transfer((images, targets), 0)
    expected = (images.float() / 255 - 0.5) / 0.25
    assert torch.allclose(normed, expected, atol=1e-5)
    assert torch.equal(same_targets, targets)


def test_global_batch_size_is_divided_by_world_size(fake_cifar_root) -> None:
    class FakeTrainer:  # only the two attributes the DataModule reads
        world_size, global_rank = 4, 1

    dm = make_dm(fake_cifar_root, batch_size=64)
    dm.trainer = FakeTrainer()
    assert dm.per_device_batch_size() == 16
    dm.batch_size = 66
    with pytest.raises(ValueError, match="divisible by the world size"):
        dm.per_device_batch_size()


def test_eval_under_ddp_counts_every_image_once(fake_cifar_root) -> None:
    """Unpadded eval shares: 70 test images over 4 ranks -> 18+18+17+17, all distinct."""

    seen = []
    dm = make_dm(fake_cifar_root, batch_size=4)
    for rank in range(4):
        dm.trainer = type("T", (), {"world_size": 4, "global_rank": rank})()
        seen.extend(list(dm.test_dataloader().sampler))
    assert sorted(seen) == list(range(70))


def test_missing_data_without_download_names_layout_and_override(tmp_path) -> None:
    from litvision.utils.errors import MissingDataError

    with pytest.raises(MissingDataError) as err:  # at construction: nothing would fill the folder later
        CIFAR10DataModule(data_dir=str(tmp_path), download=False)
    assert "cifar-10-batches-py" in str(err.value) and "dataset.data_dir" in str(err.value)


def test_data_dir_may_be_the_batches_folder_itself(fake_cifar_root) -> None:
    """``dataset.data_dir=.../cifar-10-batches-py``: prepare_data, setup and the names all accept it."""
    outer = make_dm(fake_cifar_root, val_fraction=0.2)
    for download in (False, True):  # True: prepare_data must find it there, not try to download
        inner = CIFAR10DataModule(
            str(fake_cifar_root / "cifar-10-batches-py"), download=download, val_fraction=0.2, num_workers=0
        )
        inner.prepare_data()
        inner.setup("fit")
        assert inner.class_names == outer.class_names
        for split in ("train", "val", "test"):
            assert np.array_equal(getattr(inner.splits, split).images, getattr(outer.splits, split).images)


def test_real_subset_loads_with_expected_counts(cifar_subset_root) -> None:
    dm = make_dm(cifar_subset_root, val_fraction=0.1)
    assert len(dm.splits.train) + len(dm.splits.val) == 4660
    assert len(dm.splits.test) == 846
    assert dm.class_names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert np.bincount(dm.splits.test.targets).tolist() == [83, 70, 88, 84, 76, 79, 97, 87, 88, 94]


def test_dataloader_workers_draw_independent_augmentations() -> None:
    """Albumentations 2 keeps its RNG per transform: without reseeding, forked workers flip in lockstep."""
    from torch.utils.data import DataLoader

    from litvision.datamodules.datasets.array_dataset import ArrayDataset

    image = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    image[0, :, :4] = 255  # left half white: a flip is visible
    dataset = ArrayDataset(
        np.repeat(image, 64, axis=0), np.zeros(64, dtype=np.int64), A.Compose([A.HorizontalFlip(p=0.5)])
    )
    loader = DataLoader(dataset, batch_size=1, num_workers=2, shuffle=False)
    flipped = [bool(batch[0][0, 0, 0, 0] == 0) for batch in loader]
    worker0, worker1 = flipped[0::2], flipped[1::2]  # batches alternate between the two workers
    assert worker0 != worker1
    assert 8 < sum(flipped) < 56  # and each flip really is random
