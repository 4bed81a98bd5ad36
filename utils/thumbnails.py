"""Thumbnails logged together as one W&B image list must have one size."""

from __future__ import annotations

import numpy as np


def same_size(images: list[np.ndarray], fill: int = 255) -> list[np.ndarray]:
    """Every image padded at the bottom and right (with ``fill``) to the largest height and width among them.

    W&B shows an image list as a grid of one cell size and warns ("Images sizes do not match")
    when the sizes differ, e.g. thumbnails of photos of different aspect ratios. Padding keeps
    every thumbnail's pixels as they are. Grayscale (H, W) images become RGB when any other is RGB.
    """
    if not images:
        return []
    rgb = any(image.ndim == 3 for image in images)
    if rgb:
        images = [np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image for image in images]
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    out = []
    for image in images:
        pad = [(0, height - image.shape[0]), (0, width - image.shape[1])] + ([(0, 0)] if rgb else [])
        out.append(np.pad(image, pad, constant_values=fill) if any(p[1] for p in pad) else image)
    return out
