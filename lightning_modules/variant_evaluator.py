"""Test a classifier on batches ``(images, labels, variant)``: top-1 per variant in one pass (``robustness=corruptions``).

The DataModule's test hook (``set_test_hook``) yields every test image under every variant
(clean, each corruption x severity) through one loader; this module runs the classifier on them
and counts correct predictions per variant (:class:`~litvision.lightning_modules.metrics.variant_counts.VariantCounts`,
summed across ranks: exact under DDP), logged as ``<prefix><variant>/acc_top1``
(``corruptions/gaussian_noise/3/acc_top1``, ``corruptions/clean/acc_top1``). Everything else
(precision, device, DDP sharding, normalisation after transfer) is the Trainer's and the
DataModule's, as for the classifier's own test.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from litvision.lightning_modules.metrics.class_subset import mask_logits, subset_mask
from litvision.lightning_modules.metrics.variant_counts import VariantCounts


class VariantEvaluator(L.LightningModule):
    """Args:
    classifier: the model under test (an ``ImageClassifier``; anything whose forward gives logits).
    names: the variants in the hook's order (``clean``, ``gaussian_noise/1``, ...).
    prefix: of the logged metrics; also what the run's callbacks see as ``test_prefix``, so the
        plain-test reports (reliability diagram, misclassified examples, ...) stay out of this pass.
    """

    # GroupMetrics: group codes are not in these batches (per-group metrics belong to the plain test)
    per_group_metrics = False

    def __init__(self, classifier: torch.nn.Module, names: list[str], prefix: str = "corruptions/") -> None:
        super().__init__()
        self.classifier = classifier
        self.names = list(names)
        self.test_prefix = prefix
        self.counts = VariantCounts(len(self.names))
        self.results: tuple[np.ndarray, np.ndarray] | None = None  # (correct, total) per variant, all ranks
        self._mask: torch.Tensor | None = None

    @property
    def class_names(self) -> list[str]:
        return list(getattr(self.classifier, "class_names", []))

    def on_test_start(self) -> None:
        if getattr(self.classifier, "_nhwc", False):
            self.classifier.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        datamodule = getattr(self.trainer, "datamodule", None)
        num_classes = len(self.class_names)
        self._mask = subset_mask(getattr(datamodule, "class_subset", None), num_classes) if num_classes else None
        self.counts.reset()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(images)

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        images, targets, variants = batch[0], batch[1], batch[2]
        if len(targets) == 0:  # every image of this batch was unreadable (on_bad_image=skip)
            return
        logits = mask_logits(self(images), self._mask)
        self.counts.update(variants, logits.argmax(dim=1) == targets)

    def on_test_epoch_end(self) -> None:
        correct, total = self.counts.compute()  # summed across ranks
        self.counts.reset()
        self.results = (correct.cpu().numpy(), total.cpu().numpy())
        flat = {
            f"{self.test_prefix}{name}/acc_top1": float(c) / float(t) if t else float("nan")
            for name, c, t in zip(self.names, self.results[0], self.results[1], strict=True)
        }
        self.log_dict(flat)  # already global: the same values on every rank
