"""Classification losses built from config; each factory accepts the training class counts.

``ImageClassifier`` calls ``factory(class_counts=...)`` with the DataModule's training
counts, so a user never types them. Losses that need the counts raise a clear error when
they are missing. Every factory also takes ``label_smoothing`` because recipes (e.g.
``experiment=cifar10_cpu``) set it on whatever loss is chosen.

Class-dependent tensors are non-persistent buffers: they follow the module to the
device but stay out of checkpoints (they are rebuilt from ``hparams.class_counts``), so a
checkpoint loads whatever loss the evaluating config names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from litvision.utils.class_weights import class_weights

log = logging.getLogger(__name__)


def _require_counts(class_counts: Sequence[int] | None, loss: str) -> np.ndarray:
    if class_counts is None:
        raise ValueError(
            f"loss {loss!r} needs the training class counts. train.py passes them from the DataModule "
            "(train_class_counts); in plain Python pass class_counts=[n_0, n_1, ...] to the loss factory "
            "or to ImageClassifier."
        )
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or len(counts) < 2 or (counts < 0).any():
        raise ValueError(f"class_counts must be >= 0 for at least 2 classes, got {list(class_counts)}")
    return counts


def _check_smoothing(label_smoothing: float) -> float:
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    return float(label_smoothing)


def _check_logits(logits: torch.Tensor, num_classes: int) -> None:
    if logits.shape[-1] != num_classes:
        raise ValueError(
            f"the loss was built for {num_classes} classes (from class_counts) but the logits have "
            f"{logits.shape[-1]}; the model and the DataModule disagree on the number of classes"
        )


def soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy against class distributions ``targets`` (N, C), e.g. Mixup/CutMix labels.

    Smoothing is applied to the distribution (``(1 - eps) * targets + eps / C``), as torch does
    for probability targets. With class weights, an item weighs ``targets @ weight`` (its
    labels' weights, mixed like the labels, before smoothing) and the batch is averaged by the
    sum of those: for one-hot targets this is exactly torch's weighted hard-label mean, with
    or without smoothing (torch's own probability-target path would divide by N instead).
    """
    dist = targets.float() * (1.0 - label_smoothing) + label_smoothing / logits.shape[-1]
    log_probs = F.log_softmax(logits.float(), dim=-1)
    if weight is None:
        return -(dist * log_probs).sum(dim=-1).mean()
    per_item = -(dist * weight * log_probs).sum(dim=-1)
    return per_item.sum() / (targets.float() @ weight).sum()


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with fixed per-class weights (weighted mean over the batch, as in torch)."""

    accepts_soft_targets = True  # Mixup/CutMix: see soft_cross_entropy
    weight: torch.Tensor  # a buffer (register_buffer below); declared for the type checker

    def __init__(self, weight: torch.Tensor, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("weight", weight.float(), persistent=False)
        self.label_smoothing = _check_smoothing(label_smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_logits(logits, len(self.weight))
        if targets.is_floating_point():
            return soft_cross_entropy(logits, targets, self.weight, self.label_smoothing)
        return F.cross_entropy(logits, targets, weight=self.weight, label_smoothing=self.label_smoothing)


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017): -(1 - p_y)^gamma log p_y, optionally class-weighted.

    Hand-written because torch has none (torchvision's is the binary sigmoid variant and
    cannot be imported here). With label smoothing the focal term applies to every class
    of the smoothed target: -sum_k q_k (1 - p_k)^gamma log p_k, which is plain smoothed
    cross-entropy at gamma=0. Weighted batches are averaged by the weight sum, like torch.
    Soft targets (Mixup/CutMix) replace the one-hot label in the same formula; an item then
    weighs ``targets @ weight``.
    """

    accepts_soft_targets = True
    weight: torch.Tensor | None  # a buffer (register_buffer below); declared for the type checker

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.label_smoothing = _check_smoothing(label_smoothing)
        self.register_buffer("weight", None if weight is None else weight.float(), persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[-1]
        if self.weight is not None:
            _check_logits(logits, len(self.weight))
        log_probs = F.log_softmax(logits.float(), dim=-1)
        focal = (1.0 - log_probs.exp()).clamp_min(0.0).pow(self.gamma) * log_probs
        smooth = self.label_smoothing
        labels = targets.float() if targets.is_floating_point() else F.one_hot(targets, num_classes).float()
        target_dist = labels * (1.0 - smooth) + smooth / num_classes
        per_item = -(target_dist * focal).sum(dim=-1)
        if self.weight is None:
            return per_item.mean()
        item_weight = labels @ self.weight if targets.is_floating_point() else self.weight[targets]
        return (per_item * item_weight).sum() / item_weight.sum()


class LogitAdjustedLoss(nn.Module):
    """Cross-entropy on logits + tau * log(prior) (Menon et al. 2021; tau=1 is balanced softmax, Ren et al. 2020).

    Training against prior-shifted logits makes the *raw* logits estimate the balanced
    posterior, so prediction (argmax of the raw logits, as the classifier does) needs no
    post-hoc correction. A class with no training images is given a pseudo-count of 1 so
    its log-prior stays finite. Soft targets go through torch's probability-target cross-entropy.
    """

    accepts_soft_targets = True
    log_prior: torch.Tensor  # a buffer (register_buffer below); declared for the type checker

    def __init__(
        self, class_counts: Sequence[int] | np.ndarray, tau: float = 1.0, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        counts = np.maximum(np.asarray(class_counts, dtype=np.float64), 1.0)
        prior = counts / counts.sum()
        self.tau = float(tau)
        self.label_smoothing = _check_smoothing(label_smoothing)
        self.register_buffer("log_prior", torch.tensor(np.log(prior), dtype=torch.float32), persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_logits(logits, len(self.log_prior))
        adjusted = logits + self.tau * self.log_prior.to(logits.dtype)
        return F.cross_entropy(adjusted, targets, label_smoothing=self.label_smoothing)


class DeferredReweighting(nn.Module):
    """DRW (Cao et al. 2019): plain cross-entropy, then effective-number class weights from ``start_epoch``.

    Learning the representation on the natural distribution first and re-weighting only
    late avoids the feature damage that early re-weighting does. The classifier calls
    ``on_epoch_start(epoch)`` at every training epoch start (including the first epoch
    after a resume, so a resumed run is in the right phase): the state is a pure function
    of the epoch. Soft targets: see :func:`soft_cross_entropy`.
    """

    accepts_soft_targets = True
    class_weight: torch.Tensor  # a buffer (register_buffer below); declared for the type checker

    def __init__(
        self,
        class_counts: Sequence[int] | np.ndarray,
        start_epoch: int,
        beta: float = 0.9999,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if start_epoch < 0:
            raise ValueError(f"start_epoch must be >= 0, got {start_epoch}")
        self.start_epoch = int(start_epoch)
        self.label_smoothing = _check_smoothing(label_smoothing)
        weight = torch.tensor(class_weights(class_counts, beta=beta), dtype=torch.float32)
        self.register_buffer("class_weight", weight, persistent=False)
        self.reweighting = False

    def on_epoch_start(self, epoch: int) -> None:
        active = epoch >= self.start_epoch
        if active and not self.reweighting:
            log.info("DRW: class re-weighting on from epoch %d", epoch)
        self.reweighting = active

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_logits(logits, len(self.class_weight))
        weight = self.class_weight if self.reweighting else None
        if targets.is_floating_point():
            return soft_cross_entropy(logits, targets, weight, self.label_smoothing)
        return F.cross_entropy(logits, targets, weight=weight, label_smoothing=self.label_smoothing)


# ---- factories (the ``loss=`` config group targets these) --------------------------------


def cross_entropy(class_counts: Sequence[int] | None = None, label_smoothing: float = 0.0) -> nn.Module:
    """Plain cross-entropy (class counts unused), optionally with label smoothing."""
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)


def class_balanced(
    class_counts: Sequence[int] | None = None, beta: float = 0.9999, label_smoothing: float = 0.0
) -> nn.Module:
    """Cross-entropy weighted by effective-number class weights (Cui et al. 2019), sum of weights = C."""
    counts = _require_counts(class_counts, "class_balanced")
    return WeightedCrossEntropy(torch.tensor(class_weights(counts, beta=beta)), label_smoothing)


def focal(
    class_counts: Sequence[int] | None = None,
    gamma: float = 2.0,
    beta: float | None = None,
    label_smoothing: float = 0.0,
) -> nn.Module:
    """Focal loss; ``beta`` set = class-balanced focal loss (Cui et al. 2019), None = unweighted."""
    if beta is None:
        return FocalLoss(gamma=gamma, label_smoothing=label_smoothing)
    counts = _require_counts(class_counts, "focal with beta")
    return FocalLoss(
        gamma=gamma, weight=torch.tensor(class_weights(counts, beta=beta)), label_smoothing=label_smoothing
    )


def logit_adjusted(
    class_counts: Sequence[int] | None = None, tau: float = 1.0, label_smoothing: float = 0.0
) -> nn.Module:
    """Logit-adjusted cross-entropy; tau=1 equals balanced softmax."""
    counts = _require_counts(class_counts, "logit_adjusted")
    return LogitAdjustedLoss(counts, tau=tau, label_smoothing=label_smoothing)


def drw(
    class_counts: Sequence[int] | None = None,
    start_epoch: int | None = None,
    start_fraction: float | None = None,
    max_epochs: int | None = None,
    beta: float = 0.9999,
    label_smoothing: float = 0.0,
) -> nn.Module:
    """Deferred re-weighting; switch epoch given directly or as ``start_fraction * max_epochs``.

    The config uses the fraction (0.8 = epoch 160 of 200, the paper's schedule) with
    ``max_epochs: ${trainer.max_epochs}``, so changing the epoch budget cannot silently
    leave the re-weighting phase out.
    """
    counts = _require_counts(class_counts, "drw")
    if start_epoch is None:
        if start_fraction is None or max_epochs is None or max_epochs < 1:
            raise ValueError(
                "drw needs start_epoch, or start_fraction together with max_epochs >= 1 "
                f"(got start_fraction={start_fraction}, max_epochs={max_epochs})"
            )
        if not 0.0 <= start_fraction <= 1.0:
            raise ValueError(f"start_fraction must be in [0, 1], got {start_fraction}")
        start_epoch = math.floor(start_fraction * max_epochs)
    return DeferredReweighting(counts, start_epoch=start_epoch, beta=beta, label_smoothing=label_smoothing)
