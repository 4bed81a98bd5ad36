"""Mixup and CutMix on a training batch that is already on the training device.

``ImageClassifier.training_step`` calls :class:`BatchMixer` on the normalised batch, after
the host->device copy: the mixing costs one pass over the batch on the accelerator and never
runs in the CPU loader workers (``trainer=gpu`` included). The definitions follow
torchvision's ``transforms.v2.MixUp``/``CutMix`` and timm's ``Mixup``:

* the partner of image ``i`` is image ``i - 1`` (the batch rolled by one, as torchvision);
* ``lam ~ Beta(alpha, alpha)``, one value per batch;
* Mixup (Zhang et al. 2018): ``x = lam * x_i + (1 - lam) * x_{i-1}``;
* CutMix (Yun et al. 2019): a box of side ``sqrt(1 - lam)`` times the image's, centred
  uniformly at random and clipped at the borders, is pasted from ``x_{i-1}``; ``lam`` is then
  recomputed from the clipped box, ``lam = 1 - box_area / (H * W)``;
* targets ``y = lam * onehot(y_i) + (1 - lam) * onehot(y_{i-1})``, before label smoothing
  (the loss applies its own smoothing to the mixed distribution, which is the same as
  mixing smoothed labels: smoothing is linear);
* the *dominant* label, the one of the two with weight ``>= 0.5``, is what training
  accuracy is scored against (``train/mixed_acc_top1``): on mixed images that number is
  not comparable with clean accuracy, hence its own name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from litvision.utils.errors import ConfigError


@dataclass(frozen=True)
class MixParams:
    """One batch's draw: which mix, the weight of the image itself, CutMix's box (y0, y1, x0, x1)."""

    kind: str  # "mixup", "cutmix" or "none"
    lam: float
    box: tuple[int, int, int, int] | None = None


@dataclass
class MixedBatch:
    images: torch.Tensor
    targets: torch.Tensor  # (N, C) float: the mixed one-hot distribution (no smoothing)
    dominant: torch.Tensor  # (N,) long: the label with weight >= 0.5
    params: MixParams


class BatchMixer:
    """Mixup and/or CutMix applied to whole batches (the ``mixing=`` config group).

    Args:
        mixup_alpha: Beta(alpha, alpha) parameter of Mixup; 0 turns Mixup off.
        cutmix_alpha: Beta(alpha, alpha) parameter of CutMix; 0 turns CutMix off.
        switch_prob: with both on, the probability that a batch gets CutMix rather than
            Mixup (timm's ``switch_prob``; torchvision's ``RandomChoice`` is 0.5).
        prob: probability that a batch is mixed at all (timm's ``prob``); the other batches
            train on clean images with one-hot targets.

    Random draws come from torch's global generator (seeded by ``seed_everything``).
    """

    def __init__(
        self, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, switch_prob: float = 0.5, prob: float = 1.0
    ) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ConfigError(f"mixing alphas must be >= 0, got mixup_alpha={mixup_alpha}, cutmix_alpha={cutmix_alpha}")
        if mixup_alpha == 0 and cutmix_alpha == 0:
            raise ConfigError(
                "mixing: both mixup_alpha and cutmix_alpha are 0; use mixing=none to train without mixing"
            )
        if not 0.0 <= switch_prob <= 1.0 or not 0.0 <= prob <= 1.0:
            raise ConfigError(f"mixing.switch_prob and mixing.prob must be in [0, 1], got {switch_prob}, {prob}")
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.switch_prob = float(switch_prob)
        self.prob = float(prob)

    def __repr__(self) -> str:
        return (
            f"BatchMixer(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, "
            f"switch_prob={self.switch_prob}, prob={self.prob})"
        )

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, num_classes: int) -> MixedBatch:
        return self.apply(images, targets, num_classes, self.sample(images.shape[-2], images.shape[-1]))

    # ---- drawing ------------------------------------------------------------------------
    def sample(self, height: int, width: int) -> MixParams:
        if _uniform() >= self.prob:
            return MixParams("none", 1.0)
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or _uniform() < self.switch_prob)
        if not use_cutmix:
            return MixParams("mixup", _beta(self.mixup_alpha))
        return cutmix_params(_beta(self.cutmix_alpha), height, width)

    # ---- applying -----------------------------------------------------------------------
    @staticmethod
    def apply(images: torch.Tensor, targets: torch.Tensor, num_classes: int, params: MixParams) -> MixedBatch:
        """Mix ``images`` (N, C, H, W) and integer ``targets`` (N,) as ``params`` says."""
        if targets.ndim != 1 or targets.is_floating_point():
            raise ValueError(
                f"mixing needs integer class labels of shape (N,), got {tuple(targets.shape)} {targets.dtype}"
            )
        one_hot = F.one_hot(targets, num_classes).float()
        if params.kind == "none":
            return MixedBatch(images, one_hot, targets, params)
        if not images.is_floating_point():
            images = images.float()
        partner_images, partner_targets = images.roll(1, 0), targets.roll(1, 0)
        lam = params.lam
        if params.kind == "mixup":
            mixed = images * lam + partner_images * (1.0 - lam)
        elif params.kind == "cutmix":
            assert params.box is not None  # a cutmix draw has its box
            y0, y1, x0, x1 = params.box
            mixed = images.clone()
            mixed[..., y0:y1, x0:x1] = partner_images[..., y0:y1, x0:x1]
        else:
            raise ValueError(f"unknown mix kind {params.kind!r}")
        soft = one_hot * lam + F.one_hot(partner_targets, num_classes).float() * (1.0 - lam)
        dominant = targets if lam >= 0.5 else partner_targets
        return MixedBatch(mixed, soft, dominant, params)


def cutmix_params(lam: float, height: int, width: int) -> MixParams:
    """CutMix's box for a drawn ``lam``, centred uniformly, clipped; ``lam`` from the clipped area."""
    cut = math.sqrt(1.0 - lam)
    half_h, half_w = int(cut * height / 2), int(cut * width / 2)
    cy, cx = int(torch.randint(height, (1,))), int(torch.randint(width, (1,)))
    y0, y1 = max(cy - half_h, 0), min(cy + half_h, height)
    x0, x1 = max(cx - half_w, 0), min(cx + half_w, width)
    return MixParams("cutmix", 1.0 - (y1 - y0) * (x1 - x0) / (height * width), (y0, y1, x0, x1))


def require_soft_target_loss(loss: nn.Module) -> None:
    """Refuse, at build time, a loss that has no defined form for mixed (soft) targets."""
    if isinstance(loss, nn.CrossEntropyLoss) and loss.weight is None:
        return  # torch's cross-entropy takes class probabilities (with label smoothing too)
    if getattr(loss, "accepts_soft_targets", False):
        return
    raise ConfigError(
        f"mixing (Mixup/CutMix) gives soft targets, but the loss {type(loss).__name__} has no soft-target "
        "form; use a loss from conf/loss/ (cross_entropy, class_balanced, focal, logit_adjusted, "
        "balanced_softmax, drw) or mixing=none"
    )


def _uniform() -> float:
    return float(torch.rand(()))


def _beta(alpha: float) -> float:
    return float(torch.distributions.Beta(alpha, alpha).sample())
