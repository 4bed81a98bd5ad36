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
        params: the parameters, or the classifier's parameter groups (their LR and weight decay are replaced,
            other keys, such as the fine-tuning strategy's ``name`` and ``lr_scale``, kept).
        lr / momentum / nesterov / weight_decay: as ``torch.optim.SGD``, for the >= 2-D parameters.
        vector_lr_scale: LR factor of the 1-D parameters.
    """
    if vector_lr_scale <= 0:
        raise ConfigError(
            f"optimizer.vector_lr_scale={vector_lr_scale}: must be > 0, e.g. optimizer.vector_lr_scale=64"
        )
    items = list(params)
    # bare parameters (not groups) are one group of their own, their frozen ones left out as before
    bare = [p for p in items if not isinstance(p, dict) and p.requires_grad]
    incoming = [item for item in items if isinstance(item, dict)] + ([{"params": bare}] if bare else [])
    groups: list[dict[str, Any]] = []
    for item in incoming:
        # a group's own keys (the fine-tuning strategy's name and lr_scale) stay with both its halves;
        # its lr and weight decay are this optimizer's (every parameter decayed, the no-decay split undone)
        settings = {key: value for key, value in item.items() if key not in ("params", "lr", "weight_decay")}
        matrices = [p for p in item["params"] if p.ndim > 1]
        vectors = [p for p in item["params"] if p.ndim <= 1]
        if matrices:
            groups.append({**settings, "params": matrices})
        if vectors:
            vector_settings = {"lr": lr * vector_lr_scale, "weight_decay": weight_decay / vector_lr_scale}
            groups.append({**settings, "params": vectors, **vector_settings})
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
