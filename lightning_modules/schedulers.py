"""Step-wise LR schedules that take the run's total step count.

The classifier calls ``scheduler(optimizer, total_steps=trainer.estimated_stepping_batches)``
so a schedule config never repeats the epoch count or the dataset size.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.0,
    warmup_steps: int | None = None,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up from 0, then cosine decay to ``min_lr_ratio * lr``."""
    warmup = warmup_steps if warmup_steps is not None else int(round(warmup_fraction * total_steps))
    warmup = min(max(warmup, 0), max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def one_cycle(
    optimizer: torch.optim.Optimizer, total_steps: int, pct_start: float = 0.25, div_factor: float = 25.0,
    final_div_factor: float = 1e4, anneal_strategy: str = "linear",
) -> OneCycleLR:
    """OneCycle with peak LR = the optimizer's configured LR (Smith & Topin 2019)."""
    max_lr = [group["lr"] for group in optimizer.param_groups]
    return OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=max(total_steps, 2), pct_start=pct_start,
        div_factor=div_factor, final_div_factor=final_div_factor, anneal_strategy=anneal_strategy,
    )
