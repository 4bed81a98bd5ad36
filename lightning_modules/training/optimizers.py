"""Optimizer factories that need more than a torch class and keyword arguments."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from litvision.utils.errors import ConfigError


def sgd_scaled_vectors(
    params: Iterable[Any],
    lr: float,
    momentum: float = 0.85,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    vector_lr_scale: float = 64.0,
) -> torch.optim.SGD:
    """SGD whose 1-D parameters (BatchNorm shifts, biases) take ``vector_lr_scale`` x larger steps.

    airbench's optimizer (Jordan 2024): with BatchNorm scales fixed at 1 the shifts carry the
    per-channel adaptation and learn best with a 64x larger learning rate, while their weight
    decay per step stays the same as the other parameters' (``weight_decay / vector_lr_scale``,
    torch multiplying it by the group's LR). Every parameter is decayed: the classifier's
    groups (``model.weight_decay_norm_bias``) are re-split here by dimension.

    Args:
        params: the parameters, or the classifier's parameter groups (their settings are replaced).
        lr / momentum / nesterov / weight_decay: as ``torch.optim.SGD``, for the >= 2-D parameters.
        vector_lr_scale: LR factor of the 1-D parameters.
    """
    if vector_lr_scale <= 0:
        raise ConfigError(
            f"optimizer.vector_lr_scale={vector_lr_scale}: must be > 0, e.g. optimizer.vector_lr_scale=64"
        )
    flat = []
    for item in params:
        flat.extend(item["params"] if isinstance(item, dict) else [item])
    flat = [p for p in flat if p.requires_grad]
    matrices = [p for p in flat if p.ndim > 1]
    vectors = [p for p in flat if p.ndim <= 1]
    groups = [{"params": matrices}] if matrices else []
    if vectors:
        groups.append({"params": vectors, "lr": lr * vector_lr_scale, "weight_decay": weight_decay / vector_lr_scale})
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
