"""One registry of backbone names (as in timm): ``build_backbone("resnet9", num_classes=10)``.

Configs reach it as ``_target_: litvision.lightning_modules.backbones.build_backbone`` with
``_partial_: true``; the classifier fills in ``num_classes`` from the DataModule. Any other
factory taking ``num_classes`` works too, e.g. timm's (``model=timm``, conf/model/timm.yaml).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from litvision.lightning_modules.backbones.airbench import AirbenchNet
from litvision.lightning_modules.backbones.cifar_cnn import ResNet9, SmallCNN
from litvision.lightning_modules.backbones.cifar_resnet import CifarResNet18
from litvision.lightning_modules.backbones.resnet import MODELS as IMAGENET_RESNETS
from litvision.lightning_modules.backbones.tta import TTA
from litvision.utils.errors import ConfigError

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnet9": ResNet9,
    "cifar_resnet18": CifarResNet18,
    "airbench": AirbenchNet,
    **IMAGENET_RESNETS,
}


def build_backbone(name: str, num_classes: int, tta: str | None = None, **kwargs: Any) -> nn.Module:
    """``tta``: test-time augmentation in eval mode, ``flip`` (each image and its mirror image) or
    ``flip_translate`` (also shifted by a pixel); None/``none`` = off (:class:`TTA`)."""
    if name not in BACKBONES:
        raise ConfigError(f"model.backbone.name={name}: unknown backbone; choose one of {sorted(BACKBONES)}")
    net = BACKBONES[name](num_classes=num_classes, **kwargs)
    return TTA(net, tta) if tta not in (None, "none") else net
