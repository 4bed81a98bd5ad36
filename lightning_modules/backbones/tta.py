"""Test-time augmentation as part of the network: averaged logits over a few views in eval mode."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("none", "flip", "flip_translate")


class TTA(nn.Module):
    """In eval mode, the weighted mean of the logits of a few views of each image.

    ``mode="flip"``: the image and its mirror image (2 forward passes). ``mode="flip_translate"``
    (airbench's level 2): additionally the image shifted by one pixel up-left and down-right
    (reflect borders), each with its mirror image; the untranslated pair weighs 1/2, the two
    shifted pairs 1/4 each (6 passes).

    Part of the backbone (``build_backbone(..., tta="flip")``), so validation, test, ``eval.py``
    and ``load_from_checkpoint`` all evaluate as the checkpoint's config says; training is unchanged.
    """

    def __init__(self, net: nn.Module, mode: str = "flip") -> None:
        super().__init__()
        if mode not in MODES[1:]:
            raise ValueError(f"tta={mode!r}: expected one of {MODES}")
        self.net = net
        self.mode = mode

    def _mirrored_pair(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.net(x) + self.net(x.flip(-1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.net(x)
        logits = self._mirrored_pair(x)
        if self.mode == "flip":
            return logits
        height, width = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        up_left, down_right = padded[..., :height, :width], padded[..., 2:, 2:]
        return 0.5 * logits + 0.25 * (self._mirrored_pair(up_left) + self._mirrored_pair(down_right))
