"""RandAugment, TrivialAugment-Wide (ops and ranges from the YAML) and Cutout as Albumentations transforms.

Why hand-written: Albumentations 2.0 has the single ops (and ``OneOf``/``SomeOf`` to pick
among transforms) but not these policies: RandAugment applies N ops drawn *with
replacement*, each at one fixed magnitude with a random sign; TrivialAugment draws one op
and one of 31 magnitude bins per image. Expressing that with ``OneOf`` would need one
transform instance per (op, sign, bin) and could not shear about the top-left corner as the
papers' PIL implementations do (Albumentations shears about the centre); and PIL's
``ImageEnhance.Sharpness`` (blend with a smoothed copy, factor < 1 blurs) has no
Albumentations counterpart. So the op *selection* and the op semantics live here (they
follow torchvision's ``transforms.autoaugment``, which follows the papers' code), while the
op list and each op's magnitude range are in ``conf/augmentation/*.yaml`` with citations.
Colour/histogram ops call Albumentations' own functions where they match torchvision.

Both are ``ImageOnlyTransform``s: they draw from their own ``py_random``, so
``datamodules.transforms.reseed_transform`` gives each loader worker its own stream, and a
seed reproduces the images.

Magnitude of op ``k`` at bin ``b`` (of ``num_magnitude_bins`` B): ``max_k * b / (B - 1)``,
where ``max_k`` is the YAML value; signed ops get a random sign. Op meanings (uint8 RGB):

================  ==========================================================
ShearX / ShearY   shear coefficient (x' = x + v * y), about the top-left corner
TranslateX / Y    shift in pixels, or in image widths/heights (``translate_unit``)
Rotate            degrees, about the centre
Brightness, Color, Contrast, Sharpness   enhancement factor ``1 + v``
Posterize         bits removed: keep ``8 - round(v)``
Solarize          threshold decrease: invert pixels ``>= 255 - v``
Identity, AutoContrast, Equalize         no magnitude
================  ==========================================================

Geometric ops fill uncovered pixels with ``fill`` and use nearest-neighbour interpolation
(torchvision's defaults for both policies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import albumentations.augmentations.pixel.functional as fpixel
import cv2
import numpy as np
from albumentations.core.transforms_interface import ImageOnlyTransform

from litvision.utils.errors import ConfigError

SIGNED_OPS = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"}
UNSIGNED_OPS = {"Identity", "Posterize", "Solarize", "AutoContrast", "Equalize"}
KNOWN_OPS = SIGNED_OPS | UNSIGNED_OPS

# PIL's ImageFilter.SMOOTH kernel, which ImageEnhance.Sharpness blends against
_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13.0


class _MagnitudeOps(ImageOnlyTransform):
    """Shared op table and op implementations; subclasses decide which ops at which bins."""

    def __init__(
        self,
        ops: Mapping[str, float],
        num_magnitude_bins: int = 31,
        translate_unit: str = "pixels",
        fill: float | Sequence[float] = 0,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        ops = {str(name): float(value) for name, value in dict(ops).items()}
        unknown = sorted(set(ops) - KNOWN_OPS)
        if unknown or not ops:
            raise ConfigError(f"augmentation ops {unknown or '(none)'} unknown; choose from {sorted(KNOWN_OPS)}")
        if num_magnitude_bins < 2:
            raise ConfigError(f"num_magnitude_bins must be >= 2, got {num_magnitude_bins}")
        if translate_unit not in ("pixels", "fraction"):
            raise ConfigError(f"translate_unit must be 'pixels' or 'fraction', got {translate_unit!r}")
        self.ops = ops
        self.op_names = list(ops)
        self.num_magnitude_bins = int(num_magnitude_bins)
        self.translate_unit = translate_unit
        self.fill = float(fill) if isinstance(fill, (int, float)) else tuple(float(v) for v in fill)

    def _draw(self, name: str, magnitude_bin: int) -> tuple[str, float]:
        value = self.ops[name] * magnitude_bin / (self.num_magnitude_bins - 1)
        if name in SIGNED_OPS and self.py_random.random() < 0.5:
            value = -value
        return name, value

    def apply(self, img: np.ndarray, ops: Sequence[tuple[str, float]] = (), **params: Any) -> np.ndarray:
        for name, value in ops:
            img = apply_op(img, name, value, self.translate_unit, self.fill)
        return img


class RandAugment(_MagnitudeOps):
    """RandAugment (Cubuk et al. 2020): ``num_ops`` ops drawn uniformly with replacement, all at bin ``magnitude``."""

    def __init__(
        self,
        ops: Mapping[str, float],
        num_ops: int = 2,
        magnitude: int = 9,
        num_magnitude_bins: int = 31,
        translate_unit: str = "fraction",
        fill: float | Sequence[float] = 0,
        p: float = 1.0,
    ) -> None:
        super().__init__(ops, num_magnitude_bins, translate_unit, fill, p)
        if num_ops < 1:
            raise ConfigError(f"RandAugment num_ops must be >= 1, got {num_ops}")
        if not 0 <= magnitude < num_magnitude_bins:
            raise ConfigError(f"RandAugment magnitude must be in [0, {num_magnitude_bins - 1}], got {magnitude}")
        self.num_ops = int(num_ops)
        self.magnitude = int(magnitude)

    def get_params(self) -> dict[str, Any]:
        names = [self.op_names[self.py_random.randrange(len(self.op_names))] for _ in range(self.num_ops)]
        return {"ops": [self._draw(name, self.magnitude) for name in names]}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("ops", "num_ops", "magnitude", "num_magnitude_bins", "translate_unit", "fill")


class TrivialAugmentWide(_MagnitudeOps):
    """TrivialAugment (Müller & Hutter 2021): one op drawn uniformly, at a uniformly drawn bin."""

    def get_params(self) -> dict[str, Any]:
        name = self.op_names[self.py_random.randrange(len(self.op_names))]
        return {"ops": [self._draw(name, self.py_random.randrange(self.num_magnitude_bins))]}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("ops", "num_magnitude_bins", "translate_unit", "fill")


# ---- the ops ------------------------------------------------------------------------------


def apply_op(img: np.ndarray, name: str, value: float, translate_unit: str = "pixels", fill: Any = 0) -> np.ndarray:
    """Apply one op at signed magnitude ``value`` to a uint8 HWC image (see the module table)."""
    height, width = img.shape[:2]
    if name == "Identity":
        return img
    if name == "ShearX":  # output (x, y) samples input (x + v*y, y), as PIL's (1, v, 0, 0, 1, 0)
        return _warp(img, [[1.0, value, 0.0], [0.0, 1.0, 0.0]], fill)
    if name == "ShearY":
        return _warp(img, [[1.0, 0.0, 0.0], [value, 1.0, 0.0]], fill)
    if name in ("TranslateX", "TranslateY"):
        size = width if name == "TranslateX" else height
        shift = int(value * size) if translate_unit == "fraction" else int(value)
        dx, dy = (shift, 0) if name == "TranslateX" else (0, shift)
        return _warp(img, [[1.0, 0.0, -dx], [0.0, 1.0, -dy]], fill)
    if name == "Rotate":  # counter-clockwise for positive degrees, like torchvision/PIL
        forward = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), value, 1.0)
        return _warp(img, cv2.invertAffineTransform(forward), fill)
    if name == "Brightness":
        return fpixel.adjust_brightness_torchvision(img, 1.0 + value)
    if name == "Color":
        return fpixel.adjust_saturation_torchvision(img, 1.0 + value)
    if name == "Contrast":
        return fpixel.adjust_contrast_torchvision(img, 1.0 + value)
    if name == "Sharpness":
        return sharpness(img, 1.0 + value)
    if name == "Posterize":
        bits = 8 - int(round(value))
        return img if bits >= 8 else fpixel.posterize(img, max(bits, 1))
    if name == "Solarize":
        return fpixel.solarize(img, (255.0 - value) / 255.0)
    if name == "AutoContrast":
        return fpixel.auto_contrast(img, cutoff=0, ignore=None, method="pil")
    if name == "Equalize":
        return fpixel.equalize(img, mode="pil", by_channels=True)
    raise ConfigError(f"unknown augmentation op {name!r}")


def sharpness(img: np.ndarray, factor: float) -> np.ndarray:
    """PIL ``ImageEnhance.Sharpness``: blend with the SMOOTH-filtered image (border pixels kept)."""
    if factor == 1.0:
        return img
    smooth = img.astype(np.float32)
    if img.shape[0] > 2 and img.shape[1] > 2:
        smooth[1:-1, 1:-1] = cv2.filter2D(img.astype(np.float32), -1, _SMOOTH)[1:-1, 1:-1]
        smooth = np.round(smooth)
    blended = smooth + factor * (img.astype(np.float32) - smooth)
    return np.clip(blended, 0, 255).astype(np.uint8)


def _warp(img: np.ndarray, inverse_map: Any, fill: Any) -> np.ndarray:
    """cv2 affine warp given the output->input map, nearest neighbour, constant fill."""
    channels = img.shape[2] if img.ndim == 3 else 1
    border = tuple(fill) if isinstance(fill, tuple) else (float(fill),) * min(channels, 4)
    out = cv2.warpAffine(
        img,
        np.asarray(inverse_map, dtype=np.float64),
        (img.shape[1], img.shape[0]),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border,
    )
    return out.reshape(img.shape)


class Cutout(ImageOnlyTransform):
    """Cutout (DeVries & Taylor 2017): one ``length`` x ``length`` square, centred uniformly, clipped.

    Hand-written because Albumentations' ``CoarseDropout`` keeps its holes inside the image,
    while the paper's code centres the square anywhere and clips it at the border (on 32x32
    images with length 16 that erases 14^2 pixels on average, not 16^2). ``fill``: the
    paper zeroes the normalised image, i.e. the mean colour (``augmentation.mean_pixel``).
    """

    def __init__(self, length: int = 16, fill: float | Sequence[float] = 0, p: float = 1.0) -> None:
        super().__init__(p=p)
        if length < 1:
            raise ConfigError(f"Cutout length must be >= 1, got {length}")
        self.length = int(length)
        self.fill = float(fill) if isinstance(fill, (int, float)) else tuple(float(v) for v in fill)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        cy, cx = self.py_random.randrange(height), self.py_random.randrange(width)
        half = self.length // 2
        return {"box": (max(cy - half, 0), min(cy + half, height), max(cx - half, 0), min(cx + half, width))}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0), **params: Any) -> np.ndarray:
        y0, y1, x0, x1 = box
        out = img.copy()
        out[y0:y1, x0:x1] = np.asarray(self.fill, dtype=np.float32).round().astype(img.dtype)
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("length", "fill")
