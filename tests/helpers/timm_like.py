"""A backbone factory with timm.create_model's calling convention, for tests where timm is absent.

``create_model(model_name, pretrained=False, num_classes=..., **kwargs)``: the same signature
``conf/model/timm.yaml`` targets, built from litvision's own registry, so the config
mechanism (model_name/pretrained from the config, num_classes from the classifier) is
exercised for real without installing timm.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from litvision.lightning_modules.backbones import build_backbone


def create_model(model_name: str, pretrained: bool = False, num_classes: int = 1000, **kwargs: Any) -> nn.Module:
    if pretrained:
        raise ValueError("no pretrained weights here")
    return build_backbone(model_name, num_classes=num_classes, **kwargs)
