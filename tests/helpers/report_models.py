"""Test data whose predictions the test dictates, for the run-report callbacks.

Each image carries the class the model will predict (red channel = 20 * class + 10) and how
sure it will be (green channel = logit margin * 32). :class:`EncodedPredictionNet` reads them
back, so a test builds an exactly known confusion matrix, calibration and train/val gap while
the real classifier, metrics, DataModule, callbacks and W&B logger run unchanged
(``model.backbone._target_=tests.helpers.report_models.EncodedPredictionNet augmentation=none
augmentation.normalize=null``: the net reads raw uint8 pixels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from litvision.datamodules.readers.cifar_pickle import CIFAR10_DIRNAME, META_FILE, TEST_FILES, TRAIN_FILES
from tests.helpers.fake_cifar import write_batch, write_meta

CLASSES = ["a", "b", "c", "d", "e"]
MARGIN_SCALE = 32.0


class EncodedPredictionNet(nn.Module):
    """Logits: ``margin`` for the class written in the image, 0 for the others."""

    def __init__(self, num_classes: int, **ignored: Any) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.unused = nn.Parameter(torch.zeros(1))  # something for the optimizer; its gradient is 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.float().mean(dim=(2, 3))  # (N, 3) mean per channel
        predicted = ((pixels[:, 0] - 10) / 20).round().long().clamp(0, self.num_classes - 1)
        margin = pixels[:, 1] / MARGIN_SCALE
        logits = torch.nn.functional.one_hot(predicted, self.num_classes).float() * margin[:, None]
        return logits + 0 * self.unused


def encoded_images(predicted: np.ndarray, margins: np.ndarray) -> np.ndarray:
    images = np.zeros((len(predicted), 32, 32, 3), np.uint8)
    images[..., 0] = (20 * np.asarray(predicted) + 10)[:, None, None]
    images[..., 1] = np.clip(np.rint(np.asarray(margins) * MARGIN_SCALE), 0, 255)[:, None, None]
    return images


def write_encoded_cifar(
    root: Path, train: tuple[np.ndarray, np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> Path:
    """CIFAR-format tree: ``train``/``test`` = (labels, predicted, margins) per image."""
    out = Path(root) / CIFAR10_DIRNAME
    labels, predicted, margins = train
    chunks = np.array_split(np.arange(len(labels)), len(TRAIN_FILES))
    for name, idx in zip(TRAIN_FILES, chunks, strict=True):
        write_batch(out / name, encoded_images(predicted[idx], margins[idx]), labels[idx])
    labels, predicted, margins = test
    write_batch(out / TEST_FILES[0], encoded_images(predicted, margins), labels)
    write_meta(out / META_FILE, CLASSES, num_cases_per_batch=max(len(c) for c in chunks))
    return Path(root)


OVERRIDES = [
    "model=small_cnn",
    "model.backbone._target_=tests.helpers.report_models.EncodedPredictionNet",
    "augmentation=none",
    "augmentation.normalize=null",
    "dataset.num_workers=0",
    "dataset.batch_size=20",
    "optimizer.lr=0.01",
    "dataset.val_fraction=0.2",
]
