"""Augmentation glue: Albumentations pipelines per sample, normalisation per batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class BatchNormalize(torch.nn.Module):
    """Convert a uint8 image batch to float and normalise it, on whatever device it is on.

    Doing this per batch after the host->device copy (instead of ``A.Normalize`` per
    sample in the loader workers) moves 4x fewer bytes and takes the work off the CPU.
    Batches that are already floating point (a user pipeline with its own ``A.Normalize``)
    pass through unchanged.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], max_pixel_value: float = 255.0) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}")
        scale = torch.tensor(std, dtype=torch.float32) * max_pixel_value
        self.register_buffer("mean", (torch.tensor(mean, dtype=torch.float32) * max_pixel_value).view(1, -1, 1, 1))
        self.register_buffer("inv_std", (1.0 / scale).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.is_floating_point():
            return images
        mean = self.mean.to(images.device)
        inv_std = self.inv_std.to(images.device)
        return (images.float() - mean) * inv_std
