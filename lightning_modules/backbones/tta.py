"""Test-time augmentation as part of the network: flip-averaged logits in eval mode."""

from __future__ import annotations

import torch
from torch import nn


class FlipTTA(nn.Module):
    """In eval mode, the mean of the logits of the images and of their mirror images.

    Part of the backbone (``build_backbone(..., flip_tta=True)``), so validation, test,
    ``eval.py`` and ``load_from_checkpoint`` all evaluate the same way as the checkpoint's
    config says; training is unchanged. Costs one extra forward pass per evaluated image.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        if self.training:
            return logits
        return 0.5 * (logits + self.net(x.flip(-1)))
