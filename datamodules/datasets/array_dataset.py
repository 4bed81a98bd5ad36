"""Map-style datasets that expose their labels.

Every dataset here has a ``targets`` array so that samplers, stratified splits and
long-tail subsetting can work from labels alone, without decoding a single image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from litvision.datamodules.transforms.pipeline import reseed_once_per_worker

Transform = Callable[..., dict[str, Any]]


def image_to_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """HWC numpy image -> CHW tensor, keeping the dtype (uint8 stays uint8).

    Keeping uint8 until the batch is on the device makes host->device copies 4x smaller;
    normalisation then happens once per batch (see ``transforms.BatchNormalize``).
    """
    if isinstance(image, torch.Tensor):
        return image
    if image.ndim == 2:
        image = image[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


class ArrayDataset(Dataset):
    """Images held in memory as one uint8 array (N, H, W, C), e.g. CIFAR."""

    def __init__(
        self,
        images: np.ndarray,
        targets: Sequence[int] | np.ndarray,
        transform: Transform | None = None,
        ids: Sequence[str] | np.ndarray | None = None,
    ) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} labels")
        self.images = images
        self.targets = np.asarray(targets, dtype=np.int64)
        self.transform = transform
        # sample ids (e.g. CIFAR's ``train/<n>``), kept through subset: predictions and
        # dataset.exclude_ids name samples by them; default: the position in this array
        self.ids = np.arange(len(self.targets)).astype(str) if ids is None else np.asarray(ids, dtype=str)
        if len(self.ids) != len(self.targets):
            raise ValueError(f"{len(self.ids)} ids for {len(self.targets)} samples")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            reseed_once_per_worker(self, self.transform)
            image = self.transform(image=image)["image"]
        return image_to_tensor(image), int(self.targets[index])

    def subset(self, indices: Sequence[int] | np.ndarray) -> ArrayDataset:
        indices = np.asarray(indices, dtype=np.int64)
        return ArrayDataset(self.images[indices], self.targets[indices], self.transform, self.ids[indices])

    def with_transform(self, transform: Transform | None) -> ArrayDataset:
        return ArrayDataset(self.images, self.targets, transform, self.ids)
