"""Test items under every variant of a test-time hook (``robustness=corruptions``): ``(image, label, variant)``.

One pass over ``len(dataset) * variants`` items, sample-major (item ``k`` is sample ``k // V`` under
variant ``k % V``): the loader's workers apply the hook while the model runs on the previous
batches, so the 75 corrupted copies cost inference, not a separate augmentation pass, and
every sampler, DDP shard and dropped file treats them like any test items.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from litvision.datamodules.datasets.array_dataset import image_to_tensor
from litvision.datamodules.datasets.file_dataset import stack_images
from litvision.datamodules.datasets.grouped import GroupedDataset


class TestHook(Protocol):
    """What ``DataModuleBase.set_test_hook`` takes: ``len(hook)`` variants, each ``hook(image, id, variant)``
    on a uint8 HxWxC image (after the eval transform) returning one of the same size."""

    def __len__(self) -> int: ...

    def __call__(self, image: np.ndarray, sample_id: str, variant: int) -> np.ndarray: ...


def apply_hook(hook: TestHook, image: torch.Tensor, sample_id: str, variant: int) -> torch.Tensor:
    """``hook`` on a dataset's CHW uint8 item (a view of the decoded HWC array: no copy)."""
    return image_to_tensor(hook(image.permute(1, 2, 0).numpy(), sample_id, variant))


def collate_variants(batch: list[tuple[torch.Tensor, int, int] | None]) -> tuple[torch.Tensor, ...]:
    """``(images, labels, variants)``, leaving out the items a dataset dropped (None: unreadable file)."""
    kept = [item for item in batch if item is not None]
    if not kept:
        empty = torch.empty(0, dtype=torch.int64)
        return torch.empty((0, 3, 1, 1), dtype=torch.uint8), empty, empty.clone()
    images = stack_images([image for image, _, _ in kept])
    labels = torch.tensor([label for _, label, _ in kept], dtype=torch.int64)
    return images, labels, torch.tensor([variant for *_, variant in kept], dtype=torch.int64)


class VariantDataset(Dataset):
    """``dataset`` (items ``(image, label[, group codes])``) under each of ``hook``'s variants.

    Group codes (``groups=PATH``) are left out: per-group metrics belong to the plain test.
    """

    collate_fn = staticmethod(collate_variants)

    def __init__(self, dataset: Any, hook: TestHook) -> None:
        self.dataset = dataset.dataset if isinstance(dataset, GroupedDataset) else dataset
        self.hook = hook
        self.variants = len(hook)
        # built once here (a file dataset makes them on demand), pickled into the workers with the dataset
        self.ids = np.asarray(self.dataset.ids, dtype=str)
        self.targets = np.repeat(np.asarray(self.dataset.targets), self.variants)

    def __len__(self) -> int:
        return len(self.dataset) * self.variants

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "rank":  # the DataModule sets the process rank on the dataset it loads
            setattr(self.dataset, name, value)
        super().__setattr__(name, value)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int] | None:
        sample, variant = divmod(int(index), self.variants)
        item = self.dataset[sample]
        if item is None:  # unreadable under on_bad_image=skip: dropped from the batch
            return None
        return apply_hook(self.hook, item[0], str(self.ids[sample]), variant), int(item[1]), variant
