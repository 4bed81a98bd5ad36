"""Long-tailed subsetting (CIFAR-10-LT style) that works on any labelled dataset."""

from __future__ import annotations

import numpy as np


def long_tailed_counts(n_max: int, imbalance_factor: float, num_classes: int) -> list[int]:
    """The standard exponential profile n_i = n_max * IF^(-i / (C - 1)) (Cao et al. 2019)."""
    if imbalance_factor < 1:
        raise ValueError(f"imbalance_factor must be >= 1, got {imbalance_factor}")
    if num_classes == 1:
        return [n_max]
    return [int(n_max * imbalance_factor ** (-i / (num_classes - 1))) for i in range(num_classes)]


def long_tailed_indices(targets: np.ndarray, imbalance_factor: float, num_classes: int | None = None) -> np.ndarray:
    """Indices keeping the first n_i images (in dataset order) of class i, n_max = smallest class.

    Deterministic by construction, like the reference CIFAR-10-LT code: the same data
    always gives the same subset, with class 0 as the head and class C-1 as the tail.
    """
    targets = np.asarray(targets)
    num_classes = num_classes or int(targets.max()) + 1
    per_class = [np.flatnonzero(targets == c) for c in range(num_classes)]
    # n_max is the smallest class size, so every class can supply its share even when the
    # source is not perfectly balanced (e.g. a CIFAR subset); on full CIFAR-10 it is 5000.
    n_max = min(len(members) for members in per_class)
    counts = long_tailed_counts(n_max, imbalance_factor, num_classes)
    for c, (want, members) in enumerate(zip(counts, per_class)):
        if want > len(members):
            raise ValueError(
                f"class {c} has {len(members)} images but the long-tailed profile needs {want}; "
                "lower imbalance_factor or use more data"
            )
    keep = np.concatenate([members[:want] for want, members in zip(counts, per_class)])
    return np.sort(keep)
