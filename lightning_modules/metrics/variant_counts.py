"""Correct and total counts per test variant (clean, each corruption x severity), summed across DDP ranks."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class VariantCounts(Metric):
    """``update(variants, correct)``; ``compute()`` -> ``(correct, total)``, int64 tensors of length ``variants``.

    Counts, not means: summed over ranks they are exact with unequal shards, and a binomial
    interval needs them anyway.
    """

    full_state_update = False
    correct: torch.Tensor
    total: torch.Tensor

    def __init__(self, variants: int) -> None:
        super().__init__()
        self.variants = int(variants)
        self.add_state("correct", torch.zeros(self.variants, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(self.variants, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, variants: torch.Tensor, correct: torch.Tensor) -> None:
        variants = variants.to(self.total.device).long()
        self.total += torch.bincount(variants, minlength=self.variants)
        self.correct += torch.bincount(variants[correct.to(variants.device).bool()], minlength=self.variants)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.correct, self.total
