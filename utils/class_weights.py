"""Per-class re-weighting from training counts, shared by samplers (data side) and losses (model side)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def class_weights(
    class_counts: Sequence[int] | np.ndarray, power: float = 1.0, beta: float | None = None
) -> np.ndarray:
    """Per-class weights, normalised to sum to the number of classes.

    ``beta=None``: w_c = n_c^-power (1 = inverse frequency, 0.5 = square root).
    ``beta`` in [0, 1): the "effective number" weights of Cui et al. 2019,
    w_c = (1 - beta) / (1 - beta^n_c), which interpolate between no re-weighting
    (beta=0) and inverse frequency (beta -> 1).

    A class with no training images gets weight 0 (it can never be drawn or be a
    training target, and an infinite weight would poison the normalisation).
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or len(counts) == 0:
        raise ValueError(f"class_counts must be a non-empty 1-D sequence, got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError(f"class_counts must be >= 0, got {counts.tolist()}")
    present = counts > 0
    if not present.any():
        raise ValueError("class_counts are all zero: there is nothing to weight")
    weights = np.zeros_like(counts)
    if beta is None:
        if power < 0:
            raise ValueError(f"power must be >= 0 (0 = no re-weighting, 1 = inverse frequency), got {power}")
        weights[present] = counts[present] ** -float(power)
    else:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1) (Cui et al. use 0.9, 0.99, 0.999, 0.9999), got {beta}")
        weights[present] = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
    return weights * (len(counts) / weights.sum())
