"""Copies of CIFAR trees with known defects planted in them, for the audit's tests.

Written in the official pickle format (tests/helpers/fake_cifar.py ``write_batch``), so the audit reads them
exactly as it reads the real files. Not collected as a test module itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from litvision.datamodules.readers.cifar_pickle import CIFAR10_DIRNAME, META_FILE, TEST_FILES, TRAIN_FILES, load_split
from tests.helpers.fake_cifar import write_batch

# the mix of planted copies: how each test image is changed before it replaces a training image
PLANT_MIX = (
    ["exact"] * 10 + ["jpeg75"] * 10 + ["shift"] * 10 + ["brighter10"] * 10 + ["resized"] * 5 + ["jpeg75+shift"] * 5
)
SHIFTS = [(1, 0), (0, 2), (-1, 1), (2, -2), (-2, -1), (1, 2), (0, -1), (-2, 0), (2, 1), (-1, -2)]


def jpeg(image: np.ndarray, quality: int = 75) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Content moved by (dy, dx) px; the uncovered border mirrors the edge (as a re-cropped copy would look)."""
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REFLECT_101)


def brighter(image: np.ndarray, factor: float = 1.1) -> np.ndarray:
    return np.clip(np.rint(image.astype(np.float32) * factor), 0, 255).astype(np.uint8)


def resized(image: np.ndarray, size: int = 24) -> np.ndarray:
    """Shrunk and enlarged back (a copy saved at another resolution)."""
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)


def altered(image: np.ndarray, kind: str, n: int) -> np.ndarray:
    if kind == "exact":
        return image.copy()
    if kind == "jpeg75":
        return jpeg(image)
    if kind == "shift":
        return shift(image, *SHIFTS[n % len(SHIFTS)])
    if kind == "brighter10":
        return brighter(image)
    if kind == "resized":
        return resized(image)
    if kind == "jpeg75+shift":
        return jpeg(shift(image, *SHIFTS[(n + 3) % len(SHIFTS)]))
    raise ValueError(kind)


def copy_tree(source_root: Path, target_root: Path, train_images: np.ndarray, train_labels: np.ndarray) -> Path:
    """``target_root/cifar-10-batches-py`` with the given training data (same batch sizes) and the source's test/meta."""
    source, target = Path(source_root) / CIFAR10_DIRNAME, Path(target_root) / CIFAR10_DIRNAME
    target.mkdir(parents=True, exist_ok=True)
    bounds = np.cumsum([0] + [len(load_batch_labels(source / name)) for name in TRAIN_FILES])
    for name, start, stop in zip(TRAIN_FILES, bounds[:-1], bounds[1:], strict=True):
        write_batch(target / name, train_images[start:stop], train_labels[start:stop])
    for name in (*TEST_FILES, META_FILE):
        shutil.copyfile(source / name, target / name)
    return target


def load_batch_labels(path: Path) -> list[int]:
    from litvision.datamodules.readers.cifar_pickle import load_batch

    return list(load_batch(path)[1])


def plant_test_copies(
    source_root: Path, target_root: Path, seed: int = 0, mix: list[str] = PLANT_MIX
) -> list[tuple[str, str, str]]:
    """Replace ``len(mix)`` training images by altered copies of distinct test images.

    Returns [(train id, test id, kind)] of the planted pairs.
    """
    cifar = Path(source_root) / CIFAR10_DIRNAME
    train_images, train_labels = load_split(cifar, train=True)
    test_images, test_labels = load_split(cifar, train=False)
    rng = np.random.default_rng(seed)
    test_positions = rng.choice(len(test_images), len(mix), replace=False)
    train_positions = rng.choice(len(train_images), len(mix), replace=False)
    train_images, train_labels = train_images.copy(), train_labels.copy()
    planted = []
    for n, (kind, t, p) in enumerate(zip(mix, test_positions, train_positions, strict=True)):
        train_images[p] = altered(test_images[t], kind, n)
        train_labels[p] = test_labels[t]
        planted.append((f"train/{p}", f"test/{t}", kind))
    copy_tree(source_root, target_root, train_images, train_labels)
    return planted


def flip_labels(source_root: Path, target_root: Path, fraction: float = 0.05, seed: int = 0) -> list[str]:
    """Give ``fraction`` of the training images, drawn at random, another class drawn at random;
    returns the flipped ids."""
    cifar = Path(source_root) / CIFAR10_DIRNAME
    images, labels = load_split(cifar, train=True)
    num_classes = int(labels.max()) + 1
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(labels), int(round(fraction * len(labels))), replace=False))
    labels = labels.copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, num_classes, len(flipped))) % num_classes
    copy_tree(source_root, target_root, images, labels)
    return [f"train/{i}" for i in flipped]
