"""A trained classifier for ``trainer.predict``: batches of (images, positions) -> probabilities."""

from __future__ import annotations

from typing import Any, cast

import lightning as L
import torch

from litvision.lightning_modules.metrics.class_subset import mask_logits, subset_mask
from litvision.utils.errors import ConfigError


class ProbabilityPredictor(L.LightningModule):
    """Softmax probabilities of ``classifier`` for each image, returned with the image's position.

    A wrapper rather than a ``predict_step`` on the classifier: the prediction batches carry
    positions (``datamodules/prediction.py``), not labels, and nothing here is trained.
    """

    def __init__(self, classifier: L.LightningModule) -> None:
        super().__init__()
        self.classifier = classifier
        self._mask: torch.Tensor | None = None

    @property
    def class_names(self) -> list[str]:
        # set by the classifier (nn.Module.__getattr__ types it Tensor | Module)
        return list(cast("list[str]", self.classifier.class_names))

    def setup(self, stage: str) -> None:
        """Refuse data whose classes are not the model's: its labels would be silently wrong."""
        # Trainer.datamodule: Lightning sets it; Trainer does not declare it
        datamodule = self.trainer.datamodule if self._trainer is not None else None  # type: ignore[attr-defined]
        names = getattr(datamodule, "class_names", None)
        if names is not None and list(names) != self.class_names:
            raise ConfigError(
                f"the checkpoint's model has {len(self.class_names)} classes {self.class_names[:5]}... but the "
                f"dataset has {len(names)} classes {list(names)[:5]}...: predict on the dataset it was trained on, "
                "or pass images=<folder> for unlabelled images"
            )
        # ImageNet-R/-A: probabilities over the 200 classes the set covers (the others are 0)
        subset = getattr(self.trainer.datamodule, "class_subset", None) if self._trainer is not None else None  # type: ignore[attr-defined]
        self._mask = subset_mask(subset, len(self.class_names))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return mask_logits(self.classifier(images).float(), self._mask).softmax(dim=1)

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        images, positions = batch
        if len(positions) == 0:  # every file of this batch was unreadable
            return {"positions": positions.cpu(), "probs": torch.empty(0, len(self.class_names))}
        return {"positions": positions.cpu(), "probs": self(images).cpu()}
