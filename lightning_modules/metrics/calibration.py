"""Expected calibration error (``val/ece``, ``test/ece``) from logits, with its reliability-diagram bins.

ECE (Guo et al., 2017): split the samples into ``n_bins`` equal-width bins of top-1 confidence;
ECE = sum over bins of (bin size / N) * |accuracy in the bin - mean confidence in the bin|.
torchmetrics' ``MulticlassCalibrationError`` computes it from every sample's (confidence,
correct) pair; those are ``cat`` states, gathered from all ranks at ``compute()``, so the
value under DDP is the single-process value (up to float summation order).
"""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassCalibrationError
from torchmetrics.functional.classification.calibration_error import _binning_bucketize
from torchmetrics.utilities.data import dim_zero_cat


class LogitCalibrationError(MulticlassCalibrationError):
    """``MulticlassCalibrationError`` fed with logits, keeping the bins of its last ``compute()``.

    The softmax is taken here: torchmetrics applies it only when some value lies outside
    [0, 1], so logits that happen to lie in [0, 1] (a fresh or tiny model) would silently be
    read as probabilities. ``reliability`` holds ``{"accuracy", "confidence", "count"}`` per
    bin (bin edges ``linspace(0, 1, n_bins + 1)``) from the synced states, for the diagram.
    """

    def __init__(self, num_classes: int, n_bins: int = 15, **kwargs) -> None:
        super().__init__(num_classes=num_classes, n_bins=n_bins, norm="l1", **kwargs)
        self.reliability: dict[str, torch.Tensor] | None = None

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds.float().softmax(dim=1), target)

    def compute(self) -> torch.Tensor:
        value = super().compute()
        confidences, accuracies = dim_zero_cat(self.confidences), dim_zero_cat(self.accuracies)
        self.reliability = reliability_bins(confidences, accuracies, self.n_bins)
        return value


def reliability_bins(confidences: torch.Tensor, accuracies: torch.Tensor, n_bins: int) -> dict[str, torch.Tensor]:
    """Per-bin accuracy, mean confidence and sample count, binned as the ECE is (confidence 1.0 joins the top bin)."""
    boundaries = torch.linspace(0, 1, n_bins + 1, dtype=confidences.dtype, device=confidences.device)
    accuracy, confidence, proportion = _binning_bucketize(confidences, accuracies, boundaries)
    count = proportion * len(confidences)
    # torchmetrics keeps a last bin for confidence == 1.0 exactly: it belongs to the top bin
    accuracy_top = (accuracy[-2] * count[-2] + accuracy[-1] * count[-1]) / (count[-2] + count[-1]).clamp(min=1)
    confidence_top = (confidence[-2] * count[-2] + confidence[-1] * count[-1]) / (count[-2] + count[-1]).clamp(min=1)
    accuracy, confidence, count = accuracy[:-1].clone(), confidence[:-1].clone(), count[:-1].clone()
    accuracy[-1], confidence[-1], count[-1] = (
        accuracy_top,
        confidence_top,
        count[-1] + proportion[-1] * len(confidences),
    )
    return {"accuracy": accuracy.cpu(), "confidence": confidence.cpu(), "count": count.round().cpu()}
