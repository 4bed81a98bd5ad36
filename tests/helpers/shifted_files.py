"""Write the published distribution-shift sets' files in their exact layouts (small), for tests.

Each image encodes where it came from (pixel values), so a test can check that the loader
read the right rows / folders and labelled them as the published files are labelled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CORRUPTION_ROWS = 5  # rows per severity in the generated CIFAR-10-C files (the published ones: 10,000)


def write_cifar10_1(root: Path, version: str = "v6", n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """``cifar10.1_<version>_data.npy`` (n, 32, 32, 3) uint8 + ``_labels.npy`` (n,) int64, as published."""
    root.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(1).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # noise: varied predictions
    images[:, 0, 0, 0] = np.arange(n)  # row number in the first pixel
    labels = (np.arange(n) * 7) % 10
    np.save(root / f"cifar10.1_{version}_data.npy", images)
    np.save(root / f"cifar10.1_{version}_labels.npy", labels.astype(np.int64))
    return images, labels


def write_cifar10_c(root: Path, corruptions: tuple[str, ...] = ("fog", "snow")) -> np.ndarray:
    """``<corruption>.npy`` (5 x CORRUPTION_ROWS rows, severity blocks stacked) + ``labels.npy``; returns the labels.

    Pixel (0, 0) holds the severity, (0, 1) the test image number, (0, 2) the corruption's position.
    """
    root.mkdir(parents=True, exist_ok=True)
    labels = np.tile(np.arange(CORRUPTION_ROWS) % 10, 5).astype(np.uint8)  # the published labels.npy is uint8
    for c, name in enumerate(corruptions):
        images = np.random.default_rng(c).integers(0, 256, (5 * CORRUPTION_ROWS, 32, 32, 3), dtype=np.uint8)
        for severity in range(1, 6):
            block = slice((severity - 1) * CORRUPTION_ROWS, severity * CORRUPTION_ROWS)
            images[block, 0, 0, 0] = severity
            images[block, 0, 1, 0] = np.arange(CORRUPTION_ROWS)
            images[block, 0, 2, 0] = c
        np.save(root / f"{name}.npy", images)
    np.save(root / "labels.npy", labels)
    return labels


def write_jpeg(path: Path, value: int, size: int = 40) -> None:
    """A small JPEG of one grey level."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path, quality=95)


def write_class_tree(root: Path, folders: list[str], per_folder: int = 2, suffix: str = ".jpeg") -> None:
    """``root/<folder>/<k><suffix>`` for every folder name (wnids, or ImageNet-V2's integers)."""
    for i, folder in enumerate(folders):
        for k in range(per_folder):
            write_jpeg(root / folder / f"{k:04d}{suffix}", (10 * i + k) % 256)
