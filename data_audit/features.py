"""Frozen backbone features of the audited images, each image embedded once (``audit.label_errors.method=features``).

The label-error section fits its logistic regressions on them and the duplicate section confirms
pairs with them, so both ask one :class:`FeatureStore`: an image already embedded is never run
through the network again. The network is a classifier's backbone without its head (the head is
swapped for an identity, so its output is the penultimate feature), in eval mode under
``torch.inference_mode``, fed exactly as the weights or checkpoint expect (their eval transform and
normalisation, :mod:`litvision.tasks.audit_features` chooses them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from litvision.data_audit.sources import AuditData
from litvision.datamodules.readers.decode import BadImageError
from litvision.lightning_modules.backbones.tta import TTA
from litvision.lightning_modules.weights.load import head_name

log = logging.getLogger(__name__)


def headless(net: nn.Module) -> nn.Module:
    """``net`` (test-time augmentation unwrapped) with its classifier head replaced by an identity."""
    target = net.net if isinstance(net, TTA) else net
    name = head_name(target)
    parent_name, _, child = name.rpartition(".")
    parent = target.get_submodule(parent_name) if parent_name else target
    setattr(parent, child, nn.Identity())
    return target


class FeatureStore:
    """Penultimate features of audit images by id, computed on first request and kept.

    ``transform``: the per-image eval transform (an Albumentations-style callable, ``image=`` in,
    ``{"image": ...}`` out) or None; ``normalize``: the batch normalisation (uint8 NCHW in) or None
    (then pixels are scaled to [0, 1]). ``source`` names the backbone in logs and the report.
    """

    def __init__(
        self,
        data: AuditData,
        network: nn.Module,
        transform: Callable[..., Any] | None,
        normalize: Callable[[torch.Tensor], torch.Tensor] | None,
        source: str,
        batch_size: int = 64,
    ) -> None:
        self.data = data
        self.network = network.eval()
        self.transform = transform
        self.normalize = normalize
        self.source = source
        self.batch_size = max(1, int(batch_size))
        self.seconds = 0.0  # wall time spent embedding, all requests together
        self._vectors: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._vectors)

    def features(self, ids: Sequence[str]) -> np.ndarray:
        """(len(ids), D) float32 features in the order of ``ids``; only ids not seen before are embedded."""
        ids = [str(sample_id) for sample_id in ids]
        missing = list(dict.fromkeys(sample_id for sample_id in ids if sample_id not in self._vectors))
        if missing:
            start = time.perf_counter()
            self._embed(missing)
            self.seconds += time.perf_counter() - start
        width = self.dimension
        if not ids:
            return np.zeros((0, width), np.float32)
        blank = np.full(width, np.nan, np.float32)
        return np.stack([self._vectors[i] if len(self._vectors[i]) == width else blank for i in ids])

    @property
    def dimension(self) -> int:
        """The feature width (the widest stored vector: an unreadable image's NaN row may predate it)."""
        return max((len(vector) for vector in self._vectors.values()), default=0)

    def cosine_similarity(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Row-wise cosine similarity of the features of ``a[i]`` and ``b[i]``."""
        both = self.features([*a, *b])
        unit = both / np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-12)
        return np.einsum("ij,ij->i", unit[: len(a)], unit[len(a) :]).astype(np.float32)

    def _embed(self, ids: list[str]) -> None:
        log.info("audit: embedding %d images with %s", len(ids), self.source)
        unreadable = []
        with torch.inference_mode():
            for start in range(0, len(ids), self.batch_size):
                tensors, kept = [], []
                for sample_id in ids[start : start + self.batch_size]:
                    try:
                        tensors.append(self._tensor(sample_id))
                        kept.append(sample_id)
                    except BadImageError as err:  # the health section lists it; here it gets no features
                        log.warning("audit: %s: no features (%s)", sample_id, err)
                        unreadable.append(sample_id)
                if not tensors:
                    continue
                images = torch.stack(tensors)
                images = self.normalize(images) if self.normalize is not None else images.float() / 255.0
                vectors = self.network(images).flatten(1).float().numpy()
                self._vectors.update(zip(kept, vectors.copy(), strict=True))
        for sample_id in unreadable:  # NaN rows: the label-error ranking leaves them out, as the cross-fit's
            self._vectors[sample_id] = np.full(max(1, self.dimension), np.nan, np.float32)

    def _tensor(self, sample_id: str) -> torch.Tensor:
        split, position = self.data.locate(sample_id)
        image = split.image(position)
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


class FeatureConfirmation:
    """Confirms duplicate pairs with the same features (``audit.duplicates.feature_min_similarity``): two
    copies of one picture have nearly the same backbone features, two look-alike scenes usually do not."""

    def __init__(self, store: FeatureStore, min_similarity: float) -> None:
        self.store = store
        self.min_similarity = float(min_similarity)

    def similarities(self, pairs: Sequence[Any]) -> np.ndarray:
        """Cosine similarity of each pair's (``.a``, ``.b``) features; NaN where an image has none."""
        return self.store.cosine_similarity([p.a for p in pairs], [p.b for p in pairs])

    def confirmed(self, similarities: np.ndarray) -> np.ndarray:
        return np.nan_to_num(similarities, nan=-np.inf) >= self.min_similarity
