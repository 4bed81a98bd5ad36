"""Weights in and out: ``model.backbone.weights=SOURCE`` (local files, published torchvision weights),
the key layouts of torchvision/timm/litvision, the load report, and the export back.

Everything a weight file carries is data: tensors are read with safetensors or
``torch.load(weights_only=True)``, a litvision checkpoint through the safe loader, and the
preprocessing record as plain numbers and strings (:mod:`litvision.utils.preprocessing`).
"""

from litvision.lightning_modules.weights.load import LoadReport, load_backbone_weights
from litvision.lightning_modules.weights.sources import (
    WeightSource,
    check_source,
    ensure_local,
    parse_source,
    source_preprocessing,
)

__all__ = [
    "LoadReport",
    "WeightSource",
    "check_source",
    "ensure_local",
    "load_backbone_weights",
    "parse_source",
    "source_preprocessing",
]
