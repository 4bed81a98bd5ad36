"""Augmentation of a whole batch at once, on whatever device the batch is on.

The per-sample Albumentations pipeline runs on CPU workers, one image at a time; for small
images (CIFAR) held on the training device that costs more than the step itself. Here a
random translation (reflect-101 padding, what ``PadIfNeeded(border_mode=4) + RandomCrop``
does) and a horizontal flip are ONE gather: every output pixel reads one source pixel, the
source coordinates being computed for the whole batch from per-image random shifts and flip
bits. Nothing is padded or copied per image, there is no Python loop over images and no
host synchronisation, so the same code runs on CPU and CUDA (and under ``torch.compile``).

Hand-written because no installed library does this on the device without torchvision
(kornia/torchvision are not dependencies); each function is a few tensor ops.

Randomness comes from an explicit ``torch.Generator`` (on the batch's device), so a given
seed gives the same augmentation on every run: see :class:`BatchAugment`.
"""

from __future__ import annotations

import torch


def reflect_coordinates(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Map coordinates outside ``[0, size)`` back inside by reflection without repeating the
    edge (reflect-101: -1 -> 1, size -> size - 2), like ``cv2.BORDER_REFLECT_101``."""
    period = 2 * (size - 1)
    if period == 0:
        return torch.zeros_like(coords)
    coords = coords.remainder(period)
    return torch.where(coords >= size, period - coords, coords)


def translate_flip_coordinates(
    shifts: torch.Tensor, flips: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source rows (B, H) and columns (B, W) for each output pixel of each image.

    ``shifts`` (B, 2): (dy, dx) per image, the output pixel (y, x) reads source pixel
    (y + dy, x + dx) reflected at the borders: a random crop of the reflect-padded image.
    ``flips`` (B,) bool: mirror the result left-right (applied after the translation).
    """
    rows = torch.arange(height, device=shifts.device).unsqueeze(0) + shifts[:, :1]
    x = torch.arange(width, device=shifts.device).unsqueeze(0)
    x = torch.where(flips.unsqueeze(1), width - 1 - x, x)
    cols = x + shifts[:, 1:]
    return reflect_coordinates(rows, height), reflect_coordinates(cols, width)


def gather_views(images_nhwc: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``images_nhwc[indices]`` with each image resampled at ``rows`` x ``cols``: (B, H, W, C).

    One gather of whole pixels (C values each) from the resident, contiguous (N, H, W, C)
    tensor; the batch's images are never materialised untransformed. (``index_select`` on
    the flat pixel view is ~6x faster on CPU than the equivalent 3-index advanced indexing.)
    """
    n, height, width, channels = images_nhwc.shape
    batch, out_h, out_w = len(indices), rows.shape[1], cols.shape[1]
    pixel = (indices[:, None, None] * height + rows[:, :, None]) * width + cols[:, None, :]
    pixels = images_nhwc.reshape(n * height * width, channels).index_select(0, pixel.reshape(-1))
    return pixels.view(batch, out_h, out_w, channels)


def cutout_(images: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square per image, centred uniformly on the image and clipped
    at the borders (DeVries & Taylor 2017). In place on a normalised (B, C, H, W) batch,
    where 0 is the dataset mean colour. Returns ``images``."""
    if size <= 0:
        return images
    batch, _, height, width = images.shape
    device = images.device
    centre_y = torch.randint(0, height, (batch, 1, 1), device=device, generator=generator)
    centre_x = torch.randint(0, width, (batch, 1, 1), device=device, generator=generator)
    y = torch.arange(height, device=device).view(1, height, 1)
    x = torch.arange(width, device=device).view(1, 1, width)
    low = size // 2  # square = [centre - size//2, centre - size//2 + size)
    inside = (y >= centre_y - low) & (y < centre_y - low + size) & (x >= centre_x - low) & (x < centre_x - low + size)
    images.masked_fill_(inside.unsqueeze(1), 0.0)
    return images


class BatchAugment:
    """Random translate + flip (+ optional cutout) for batches gathered from a resident tensor.

    Args:
        translate: largest shift in pixels in each direction (reflect-101 borders); 0 = off.
            ``translate=4`` is the standard CIFAR "pad 4 + random crop 32"; airbench uses 2.
        flip: ``"random"`` (each image mirrored with p=0.5), ``"alternating"`` (airbench:
            each image gets a random flip bit once per run, and every odd epoch mirrors all
            images, so over two consecutive epochs every image is seen both ways) or ``"none"``.
        cutout: side of the zeroed square (applied after normalisation); 0 = off.
    """

    FLIPS = ("random", "alternating", "none")

    def __init__(self, translate: int = 2, flip: str = "random", cutout: int = 0) -> None:
        if translate < 0 or cutout < 0:
            raise ValueError(f"translate and cutout must be >= 0, got translate={translate}, cutout={cutout}")
        if flip not in self.FLIPS:
            raise ValueError(f"flip={flip!r}: expected one of {self.FLIPS}")
        self.translate = int(translate)
        self.flip = flip
        self.cutout = int(cutout)

    def __repr__(self) -> str:
        return f"BatchAugment(translate={self.translate}, flip={self.flip!r}, cutout={self.cutout})"

    def flip_bits(
        self, indices: torch.Tensor, epoch: int, base_flips: torch.Tensor | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Which images of the batch are mirrored: (B,) bool on the batch's device."""
        if self.flip == "none":
            return torch.zeros(len(indices), dtype=torch.bool, device=indices.device)
        if self.flip == "random":
            return torch.rand(len(indices), device=indices.device, generator=generator) < 0.5
        if base_flips is None:
            raise ValueError("flip='alternating' needs the per-image base flip bits of the split")
        return base_flips[indices] ^ bool(epoch % 2)

    def views(
        self,
        images_nhwc: torch.Tensor,
        indices: torch.Tensor,
        epoch: int = 0,
        base_flips: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Translated/flipped uint8 views of ``images_nhwc[indices]``, as a (B, C, H, W) tensor in
        channels-last memory (a free permute of the gathered NHWC block)."""
        _, height, width, _ = images_nhwc.shape
        batch = len(indices)
        if self.translate:
            shifts = torch.randint(
                -self.translate, self.translate + 1, (batch, 2), device=indices.device, generator=generator
            )
        else:
            shifts = torch.zeros(batch, 2, dtype=torch.long, device=indices.device)
        flips = self.flip_bits(indices, epoch, base_flips, generator)
        rows, cols = translate_flip_coordinates(shifts, flips, height, width)
        return gather_views(images_nhwc, indices, rows, cols).permute(0, 3, 1, 2)

    def after_normalize(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The parts that act on normalised float images (cutout)."""
        return cutout_(images, self.cutout, generator) if self.cutout else images
