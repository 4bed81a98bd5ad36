"""Classification losses built from config; each factory accepts the training class counts."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def cross_entropy(class_counts: Sequence[int] | None = None, label_smoothing: float = 0.0) -> nn.Module:
    """Plain cross-entropy (class counts unused), optionally with label smoothing."""
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
