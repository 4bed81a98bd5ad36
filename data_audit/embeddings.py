"""Optional confirmation of near-duplicate pairs by a trained checkpoint (``audit.ckpt_path=``).

Two copies of one picture have nearly the same penultimate-layer features in a trained model; two
look-alike scenes of different content usually do not. The features are the input of the model's
last linear layer (the classifier head), taken with a forward hook, so any backbone works. With
``audit.label_errors.method=features`` the checkpoint's features are already in the run's
:class:`~litvision.data_audit.features.FeatureStore` (the same network without its head, fed with the
checkpoint's own preprocessing): they are taken from there, no image is embedded twice.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from litvision.data_audit.duplicates import NEAR, Pair
from litvision.data_audit.features import FeatureStore
from litvision.data_audit.sources import AuditData

log = logging.getLogger(__name__)
BATCH = 64


class EmbeddingCheck:
    """Keep a near pair only if its images' embeddings are within ``max_distance`` (cosine distance)."""

    def __init__(
        self,
        ckpt_path: str,
        data: AuditData,
        max_distance: float,
        trust: dict | None = None,
        store: FeatureStore | None = None,
    ) -> None:
        self.ckpt_path = str(ckpt_path)
        self.store = store  # the checkpoint's features, when the run has them already
        self.trust = trust or {}  # load_classifier's trust_checkpoint* keyword arguments
        self.data = data
        self.max_distance = max_distance

    def embeddings(self, ids: list[str]) -> dict[str, np.ndarray]:
        if self.store is not None:
            vectors = self.store.features(ids)
            unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            return dict(zip(ids, unit, strict=True))
        from litvision.lightning_modules.checkpoints import load_classifier

        model = load_classifier(self.ckpt_path, map_location="cpu", **self.trust).eval()
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        if not head:
            raise ValueError(f"{self.ckpt_path}: the model has no linear layer to take embeddings from")
        features: list[torch.Tensor] = []
        hook = head[-1].register_forward_hook(lambda module, inputs, output: features.append(inputs[0].flatten(1)))
        dm = self.data.datamodule
        out: dict[str, np.ndarray] = {}
        try:
            with torch.no_grad():
                for start in range(0, len(ids), BATCH):
                    chunk = ids[start : start + BATCH]
                    images = torch.stack([self._tensor(sample_id, dm) for sample_id in chunk])
                    if dm.normalize is not None:
                        images = dm.normalize(images)
                    features.clear()
                    model(images)
                    vectors = torch.nn.functional.normalize(features[-1].float(), dim=1).numpy()
                    out.update(zip(chunk, vectors, strict=True))
        finally:
            hook.remove()
        return out

    def _tensor(self, sample_id: str, dm) -> torch.Tensor:
        split, position = self.data.locate(sample_id)
        image = split.image(position)
        if dm.eval_transform is not None:
            image = dm.eval_transform(image=image)["image"]
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)

    def __call__(self, pairs: list[Pair]) -> list[Pair]:
        near = [p for p in pairs if p.kind == NEAR]
        vectors = self.embeddings(sorted({i for p in near for i in (p.a, p.b)}))
        kept = [p for p in pairs if p.kind != NEAR or 1.0 - float(vectors[p.a] @ vectors[p.b]) <= self.max_distance]
        log.info(
            "audit: %s confirms %d of %d near-duplicate pairs (embedding cosine distance <= %s)",
            self.ckpt_path,
            sum(p.kind == NEAR for p in kept),
            len(near),
            self.max_distance,
        )
        return kept
