"""Published weights litvision knows by name: torchvision's for the ResNets we define layer for layer.

File names, SHA-256 prefixes and eval transforms are torchvision's own
(``torchvision/models/resnet.py``: ``ResNet18_Weights``/``ResNet50_Weights``, each with
``partial(ImageClassification, crop_size=224[, resize_size=232])``, whose defaults are resize 256,
bilinear, ImageNet mean/std). The hash prefix is the part of the file name after the dash, as
``torch.hub`` checks it. Nothing here imports torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass

from litvision.utils.preprocessing import Preprocessing, torchvision_eval

TORCHVISION_URL_BASE = "https://download.pytorch.org/models/"
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class PublishedWeights:
    """One named weight: what it is for, where it is, how to check it, how to feed it."""

    name: str  # e.g. "torchvision:ResNet50_Weights.IMAGENET1K_V2"
    architecture: str  # our registry's (and timm's) model name: resnet18, resnet50
    file_name: str  # on the download server, e.g. "resnet50-11ad3fa6.pth"
    layout: str  # the key layout of the file (lightning_modules/weights/layouts.py)
    preprocessing: Preprocessing
    num_classes: int = IMAGENET_CLASSES

    @property
    def sha256_prefix(self) -> str:
        """The hex digits after the last dash of the file name (torch.hub's ``check_hash`` rule)."""
        return self.file_name.rsplit(".", 1)[0].rsplit("-", 1)[1]


def _torchvision(enum_member: str, architecture: str, file_name: str, resize: int = 256) -> PublishedWeights:
    return PublishedWeights(
        name=f"torchvision:{enum_member}",
        architecture=architecture,
        file_name=file_name,
        layout="torchvision",
        preprocessing=torchvision_eval(crop=224, resize=resize),
    )


PUBLISHED: dict[str, PublishedWeights] = {
    entry.name: entry
    for entry in (
        _torchvision("ResNet18_Weights.IMAGENET1K_V1", "resnet18", "resnet18-f37072fd.pth"),
        _torchvision("ResNet50_Weights.IMAGENET1K_V1", "resnet50", "resnet50-0676ba61.pth"),
        _torchvision("ResNet50_Weights.IMAGENET1K_V2", "resnet50", "resnet50-11ad3fa6.pth", resize=232),
    )
}
# torchvision's DEFAULT members
ALIASES = {
    "torchvision:ResNet18_Weights.DEFAULT": "torchvision:ResNet18_Weights.IMAGENET1K_V1",
    "torchvision:ResNet50_Weights.DEFAULT": "torchvision:ResNet50_Weights.IMAGENET1K_V2",
}


def published(name: str) -> PublishedWeights | None:
    return PUBLISHED.get(ALIASES.get(name, name))
