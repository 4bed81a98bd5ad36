"""The eval preprocessing record (:class:`~litvision.utils.preprocessing.Preprocessing`) <-> transforms.

:func:`eval_transform` and :func:`batch_normalize` build what a record describes with litvision's
own code: the record is plain numbers and names, so a checkpoint or weight file only ever chooses
among a resize of the shorter side, a centre crop, an interpolation and a normalisation, never a
class to build. :func:`describe` goes the other way: the record of a run's actual eval pipeline,
which the training task stores in every checkpoint (None when the pipeline is something a record
cannot express; eval.py and predict.py then need the run's ``augmentation=`` again).

Resizing is OpenCV's (Albumentations ``SmallestMaxSize``): the same interpolation as torchvision's
published eval transforms, without PIL's antialiasing when shrinking.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2

from litvision.datamodules.transforms.pipeline import BatchNormalize
from litvision.utils.preprocessing import Preprocessing

CV2_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
INTERPOLATION_NAME = {code: name for name, code in CV2_INTERPOLATION.items()}


def eval_transform(record: Preprocessing) -> A.Compose | None:
    """Resize the shorter side to ``record.resize``, centre-crop ``record.crop``; None when it does neither."""
    steps: list[Any] = []
    if record.resize is not None:
        steps.append(A.SmallestMaxSize(max_size=record.resize, interpolation=CV2_INTERPOLATION[record.interpolation]))
    if record.crop is not None:
        steps.append(A.CenterCrop(height=record.crop, width=record.crop))
    return A.Compose(steps) if steps else None


def batch_normalize(record: Preprocessing) -> BatchNormalize:
    return BatchNormalize(mean=list(record.mean), std=list(record.std))


def describe(
    transform: Any, normalize: BatchNormalize | None, resolution: int | None = None
) -> tuple[Preprocessing | None, str]:
    """(the record of ``transform`` + ``normalize``, "") or (None, why it cannot be one)."""
    if not isinstance(normalize, BatchNormalize):
        return None, "the images are not normalised per batch (BatchNormalize)"
    mean, std = normalize.channel_mean, normalize.channel_std
    steps = list(getattr(transform, "transforms", [transform])) if transform is not None else []
    resize = crop = None
    interpolation = "bilinear"
    for step in steps:
        if getattr(step, "p", 1.0) != 1.0:
            return None, f"the eval transform's {type(step).__name__} is random (p={step.p})"
        if type(step) is A.SmallestMaxSize and resize is None and crop is None:
            size = step.max_size[0] if isinstance(step.max_size, (list, tuple)) else step.max_size
            if not isinstance(size, int) or step.interpolation not in INTERPOLATION_NAME:
                return None, "the eval transform's SmallestMaxSize has no single size or a rare interpolation"
            resize, interpolation = size, INTERPOLATION_NAME[step.interpolation]
        elif type(step) is A.CenterCrop and crop is None and step.height == step.width:
            crop = int(step.height)
        else:
            return None, f"the eval transform has a {type(step).__name__} (a record holds a resize and a square crop)"
    if resolution is None:
        resolution = crop
    return Preprocessing(mean, std, resolution=resolution, resize=resize, crop=crop, interpolation=interpolation), ""
