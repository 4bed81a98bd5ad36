"""Val/test datasets whose items also carry each sample's group codes, for per-group metrics (``groups=PATH``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate


class GroupedDataset(Dataset):
    """Items ``(image, label, codes)``: ``dataset``'s item plus its row of ``codes`` ((N, columns) int64,
    -1 = no group); an item the dataset drops (None: an unreadable file) stays None.

    The batch is then ``(images, labels, codes)``: the classifier and the callbacks read
    ``batch[0]``/``batch[1]``, the group metrics ``batch[2]``; codes travel with their image
    through any sampler, DDP shard or dropped file.
    """

    def __init__(self, dataset: Any, codes: np.ndarray) -> None:
        if len(codes) != len(dataset):
            raise ValueError(f"{len(codes)} group rows for {len(dataset)} samples")
        self.dataset = dataset
        self.codes = torch.as_tensor(codes, dtype=torch.long)
        self._inner_collate = getattr(dataset, "collate_fn", None) or default_collate

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # targets, ids, rank, bad_images... of the wrapped dataset
        if name in ("dataset", "codes", "_inner_collate"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "rank":  # the DataModule sets the process rank on the dataset it loads
            setattr(self.dataset, name, value)
        super().__setattr__(name, value)

    def __getitem__(self, index: int) -> tuple[Any, ...] | None:
        item = self.dataset[index]
        return None if item is None else (*item, self.codes[index])

    def collate_fn(self, batch: list[tuple[Any, ...] | None]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kept = [item for item in batch if item is not None]
        images, labels = self._inner_collate([(image, label) for image, label, _ in kept])
        codes = torch.stack([c for *_, c in kept]) if kept else torch.empty((0, self.codes.shape[1]), dtype=torch.long)
        return images, labels, codes
