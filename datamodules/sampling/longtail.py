"""Long-tailed subsetting (CIFAR-10-LT style) that works on any labelled dataset.

It needs only the labels, so the DataModule applies it to the training split of any
dataset that exposes ``targets`` (CIFAR pickles, class folders, ...); val/test stay balanced.
"""

from __future__ import annotations

import numpy as np


def long_tailed_counts(n_max: int, imbalance_factor: float, num_classes: int) -> list[int]:
    """The standard exponential profile n_i = floor(n_max * IF^(-i / (C - 1))) (Cao et al. 2019).

    Class 0 keeps ``n_max`` images, class C-1 keeps ``n_max / IF``; flooring matches the
    reference CIFAR-10-LT code (IF=100 on full CIFAR-10: 5000, 2997, ..., 50).
    """
    if imbalance_factor < 1:
        raise ValueError(f"imbalance_factor must be >= 1, got {imbalance_factor}")
    if num_classes < 1 or n_max < 1:
        raise ValueError(f"need num_classes >= 1 and n_max >= 1, got {num_classes} and {n_max}")
    if num_classes == 1:
        return [int(n_max)]
    return [int(n_max * imbalance_factor ** (-i / (num_classes - 1))) for i in range(num_classes)]


def long_tailed_indices(targets: np.ndarray, imbalance_factor: float, num_classes: int | None = None) -> np.ndarray:
    """Sorted indices keeping the first n_i images (in dataset order) of class i.

    n_max is the smallest class size, so every class can supply its share even when the
    source is not perfectly balanced (e.g. a CIFAR subset); on full CIFAR-10 it is 5000.
    Deterministic by construction, like the reference CIFAR-10-LT code: the same data
    always gives the same subset, with class 0 as the head and class C-1 as the tail.
    """
    targets = np.asarray(targets)
    if targets.ndim != 1 or len(targets) == 0:
        raise ValueError(f"targets must be a non-empty 1-D array of labels, got shape {targets.shape}")
    num_classes = num_classes or int(targets.max()) + 1
    per_class = [np.flatnonzero(targets == c) for c in range(num_classes)]
    sizes = [len(members) for members in per_class]
    n_max = min(sizes)
    if n_max == 0:
        empty = [c for c, size in enumerate(sizes) if size == 0]
        raise ValueError(f"classes {empty} have no training images; a long-tailed profile needs every class")
    counts = long_tailed_counts(n_max, imbalance_factor, num_classes)
    if counts[-1] == 0:
        raise ValueError(
            f"imbalance_factor={imbalance_factor} leaves the rarest class with 0 images "
            f"(n_max={n_max}, the smallest class); use imbalance_factor <= {n_max} or more data"
        )
    keep = np.concatenate([members[:want] for want, members in zip(counts, per_class, strict=True)])
    return np.sort(keep)
