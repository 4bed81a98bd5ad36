"""Scoring a model over a subset of its classes (ImageNet-R/-A: 200 of ImageNet's 1,000).

The logits of the classes outside the subset are set to -inf before anything is computed, so
the prediction, the top-k, the softmax confidence and the loss are those of a 200-way classifier
made of the same weights: the protocol of the sets' authors (``output[:, indices_in_1k]``),
kept in the 1,000-class label space so metric keys and per-class recall stay the model's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def subset_mask(class_subset: Sequence[int] | None, num_classes: int) -> torch.Tensor | None:
    """A boolean (num_classes,) mask of the kept classes, or None to keep every class."""
    if class_subset is None:
        return None
    indices = torch.as_tensor(list(class_subset), dtype=torch.long)
    if len(indices) == 0 or indices.min() < 0 or indices.max() >= num_classes:
        raise ValueError(
            f"class subset {list(class_subset)[:5]}... is not a set of classes of a {num_classes}-class model"
        )
    mask = torch.zeros(num_classes, dtype=torch.bool)
    mask[indices] = True
    return mask


def mask_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``logits`` with the classes outside ``mask`` at -inf (unchanged when ``mask`` is None)."""
    if mask is None:
        return logits
    return logits.masked_fill(~mask.to(logits.device), float("-inf"))
