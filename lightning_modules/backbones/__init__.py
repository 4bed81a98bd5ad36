"""One registry of backbone names (as in timm): ``build_backbone("resnet9", num_classes=10)``.

Configs reach it as ``_target_: litvision.lightning_modules.backbones.build_backbone`` with
``_partial_: true``; the classifier fills in ``num_classes`` from the DataModule. Any other
factory taking ``num_classes`` works too, e.g. ``_target_: timm.create_model``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from litvision.lightning_modules.backbones.airbench import AirbenchNet
from litvision.lightning_modules.backbones.cifar_cnn import ResNet9, SmallCNN
from litvision.lightning_modules.backbones.cifar_resnet import CifarResNet18
from litvision.lightning_modules.backbones.tta import FlipTTA

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnet9": ResNet9,
    "cifar_resnet18": CifarResNet18,
    "airbench": AirbenchNet,
}


def register_backbone(name: str, factory: Callable[..., nn.Module]) -> None:
    BACKBONES[name] = factory


def build_backbone(name: str, num_classes: int, flip_tta: bool = False, **kwargs: Any) -> nn.Module:
    """``flip_tta``: evaluate on the mean logits of each image and its mirror image (:class:`FlipTTA`)."""
    _register_imagenet_resnets()
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; available: {sorted(BACKBONES)}")
    net = BACKBONES[name](num_classes=num_classes, **kwargs)
    return FlipTTA(net) if flip_tta else net


def _register_imagenet_resnets() -> None:
    """ImageNet ResNets live in their own module; registered lazily to keep imports light."""
    try:
        from litvision.lightning_modules.backbones import resnet
    except ImportError:
        return
    for name in getattr(resnet, "MODELS", {}):
        BACKBONES.setdefault(name, resnet.MODELS[name])
