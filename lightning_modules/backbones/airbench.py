"""The airbench CIFAR-10 network: a whitened first layer and three conv groups.

Architecture of Keller Jordan's airbench94 ("94% on CIFAR-10 in 3.29 seconds on a single
GPU", arXiv:2404.00498), written here from the paper's description:

* a 2x2 convolution without padding whose weights are the ZCA-style whitening of the
  training images' 2x2 patches (the eigenvectors of the patch covariance, scaled by
  1/sqrt(eigenvalue), and their negatives): fixed, never trained (its bias is);
* three groups of conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU, widths
  (64, 256, 256) by default, convolutions initialised to the identity where the channel
  counts allow (an "implicit residual"), BatchNorm with a fixed scale of 1 (only the shift
  is learnt) and a fast running-statistics momentum;
* a 3x3 max-pool, a linear layer and a fixed logit scale of 1/9.

About 0.7 GFLOP per image for a training step at the default widths, slightly more than
ResNet-9 at width 32, but it reaches a given accuracy in far fewer epochs. The whitening
weights are set from data by ``callbacks/whitening_init.py`` at the start of a fresh fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class WhiteningConv(nn.Conv2d):
    """``kernel x kernel`` convolution, no padding, to ``2 * in_channels * kernel**2`` channels.

    :meth:`init_whitening` sets the weights from images; they are frozen (``requires_grad``
    False), the bias is trained. Until initialised it is a random (frozen) projection.
    """

    def __init__(self, in_channels: int = 3, kernel_size: int = 2) -> None:
        super().__init__(in_channels, 2 * in_channels * kernel_size**2, kernel_size, padding=0, bias=True)
        self.weight.requires_grad_(False)
        assert self.bias is not None  # bias=True above
        nn.init.zeros_(self.bias)

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4, chunk: int = 1024) -> None:
        """Whiten the ``kernel x kernel`` patches of ``images`` (N, C, H, W, normalised as the
        network sees them): weights = eigenvectors of the patch covariance / sqrt(eigenvalue + eps),
        largest first, followed by their negatives (so a following GELU keeps both signs)."""
        channels, kh, kw = self.weight.shape[1:]
        dim = channels * kh * kw
        covariance = torch.zeros(dim, dim, dtype=torch.float64, device=images.device)
        count = 0
        for part in images.split(chunk):
            patches = part.float().unfold(2, kh, 1).unfold(3, kw, 1)  # N, C, H', W', kh, kw
            patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, dim).double()
            covariance += patches.T @ patches
            count += len(patches)
        covariance /= max(count, 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]).reshape(dim, channels, kh, kw)
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight.dtype))


class FixedScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose scale stays 1 (only the shift is learnt); ``momentum`` is the share of
    the NEW batch statistics in the running estimate (torch's convention)."""

    def __init__(self, channels: int, momentum: float = 0.4, eps: float = 1e-12) -> None:
        super().__init__(channels, eps=eps, momentum=momentum)
        self.weight.requires_grad_(False)


def identity_init_conv(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


class ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int, bn_momentum: float) -> None:
        super().__init__()
        self.conv1 = identity_init_conv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = FixedScaleBatchNorm(c_out, momentum=bn_momentum)
        self.conv2 = identity_init_conv(c_out, c_out)
        self.norm2 = FixedScaleBatchNorm(c_out, momentum=bn_momentum)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """Whitening conv -> GELU -> 3 conv groups -> maxpool 3 -> linear, logits x ``logit_scale``.

    Args:
        num_classes: output classes.
        widths: channels of the three groups ((64, 256, 256) in airbench94).
        whitening_kernel: patch size of the whitening layer (2).
        bn_momentum: torch-convention BatchNorm momentum (0.4 = airbench's 0.6 decay).
        logit_scale: fixed factor on the logits (1/9).
    """

    def __init__(
        self,
        num_classes: int = 10,
        widths: Sequence[int] = (64, 256, 256),
        whitening_kernel: int = 2,
        bn_momentum: float = 0.4,
        logit_scale: float = 1 / 9,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"widths must list the 3 group widths, got {list(widths)}")
        self.logit_scale = logit_scale
        self.whiten = WhiteningConv(in_channels, whitening_kernel)
        c_in = self.whiten.out_channels
        groups = []
        for width in widths:
            groups.append(ConvGroup(c_in, int(width), bn_momentum))
            c_in = int(width)
        self.features = nn.Sequential(nn.GELU(), *groups, nn.MaxPool2d(3), nn.Flatten())
        self.fc = nn.Linear(c_in, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(self.whiten(x))) * self.logit_scale
