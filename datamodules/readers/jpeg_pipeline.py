"""File bytes -> augmented RGB image, decoding JPEGs only as large as the augmentation needs.

An Albumentations pipeline only sees pixels, so it cannot know that a 2400x1600 JPEG
destined for a 224x224 output could be decoded at 1/2, 1/4 or 1/8 scale by libjpeg for a
fraction of the cost. :class:`SamplePipeline` looks at the first transform of the pipeline
and, from the JPEG header size alone, picks the largest DCT reduction that cannot lower the
output resolution:

* ``RandomResizedCrop``: the crop box is sampled first, by the transform's *own* parameter
  sampler (``get_params_dependent_on_data``) and its own random state, on the header size,
  so the distribution is exactly Albumentations'. The image is then decoded at the largest
  reduction that keeps the crop box at least the output size, cropped and resized with the
  transform's interpolation; the remaining transforms run as usual (a ``HorizontalFlip``
  without Albumentations' per-call bookkeeping: same random decision, same ``cv2.flip``).
* ``SmallestMaxSize`` / ``LongestMaxSize`` / ``Resize``: decoded at the largest reduction
  that keeps the image at least the target size; the whole pipeline then runs unchanged
  (the resize brings it to exactly the same size as from a full decode).
* Anything else, or a non-JPEG file: full decode, whole pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeGuard

import cv2
import numpy as np

from litvision.datamodules.readers.decode import DEFAULT_MAX_IMAGE_PIXELS, decode_image, jpeg_header, largest_reduction

try:  # Albumentations is a dependency, but the pipeline also accepts any callable transform.
    import albumentations as A
except ImportError:  # pragma: no cover
    A = None


def _always_applied(transform: Any) -> bool:
    return getattr(transform, "p", 1.0) >= 1.0


def _plain_compose(transform: Any) -> TypeGuard[Any]:  # TypeGuard: then an A.Compose (untyped)
    """An ``A.Compose`` of plain image transforms (no bbox/keypoint processors), always applied."""
    return (
        A is not None
        and type(transform) is A.Compose
        and _always_applied(transform)
        and not getattr(transform, "processors", None)
        and len(transform.transforms) > 0
    )


class SamplePipeline:
    """``pipeline(data: bytes) -> np.ndarray``: decode, then apply ``transform`` (or not).

    ``max_pixels``: the pixel budget of :func:`~litvision.datamodules.readers.decode.check_image_size`
    (``dataset.max_image_pixels``); a larger image raises ``ImageTooLargeError`` before decoding.
    """

    def __init__(
        self,
        transform: Callable[..., dict[str, Any]] | None = None,
        max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.transform = transform
        self.max_pixels = max_pixels
        self.mode = "full"
        self.first: Any = None  # the leading albumentations transform the decode does
        self.rest: list = []
        if _plain_compose(transform):
            first = transform.transforms[0]
            if isinstance(first, A.RandomResizedCrop) and _always_applied(first):
                self.mode, self.first = "random_resized_crop", first
                # Applied one by one: Compose's per-call validation would cost more than a flip.
                self.rest = list(transform.transforms[1:])
            elif isinstance(first, (A.SmallestMaxSize, A.LongestMaxSize, A.Resize)) and _always_applied(first):
                self.mode, self.first = "resize_first", first

    def __call__(self, data: bytes) -> np.ndarray:
        header = jpeg_header(data)
        if header is None or self.mode == "full":
            return self._apply(self.transform, decode_image(data, 1, header, self.max_pixels))
        if self.mode == "random_resized_crop":
            return self._random_resized_crop(data, header)
        factor = largest_reduction(header.height, header.width, *self._min_size(header.height, header.width))
        return self._apply(self.transform, decode_image(data, factor, header, self.max_pixels))

    # ---- helpers ----------------------------------------------------------------------
    @staticmethod
    def _apply(transform: Callable | None, image: np.ndarray) -> np.ndarray:
        return image if transform is None else transform(image=image)["image"]

    def _min_size(self, height: int, width: int) -> tuple[int, int]:
        """Smallest decoded (height, width) that ``self.first`` only ever shrinks, so that it
        gives the same output from a reduced decode as from a full one."""
        t = self.first
        if isinstance(t, A.Resize):
            return t.height, t.width
        target = _max_size(t)
        if target is None:  # max_size_hw variants: do not guess
            return height, width
        if isinstance(t, A.SmallestMaxSize):  # the shorter side must stay >= target
            return (target, 1) if height <= width else (1, target)
        return (target, 1) if height >= width else (1, target)  # LongestMaxSize: the longer side

    def _random_resized_crop(self, data: bytes, header) -> np.ndarray:
        rrc = self.first
        # The transform's own sampler, fed the header size instead of the decoded image.
        x0, y0, x1, y1 = rrc.get_params_dependent_on_data({"shape": (header.height, header.width)}, {})["crop_coords"]
        out_h, out_w = rrc.size
        factor = largest_reduction(y1 - y0, x1 - x0, out_h, out_w)
        image = decode_image(data, factor, header, self.max_pixels)
        if factor > 1:  # map the box into the decoded image (libjpeg rounds sizes up)
            sy, sx = image.shape[0] / header.height, image.shape[1] / header.width
            x0, x1 = round(x0 * sx), max(round(x0 * sx) + 1, min(image.shape[1], round(x1 * sx)))
            y0, y1 = round(y0 * sy), max(round(y0 * sy) + 1, min(image.shape[0], round(y1 * sy)))
        crop = image[y0:y1, x0:x1]
        interpolation = rrc.interpolation
        if getattr(rrc, "area_for_downscale", None) in ("image", "image_mask") and (
            crop.shape[0] > out_h or crop.shape[1] > out_w
        ):
            interpolation = cv2.INTER_AREA
        image = cv2.resize(crop, (out_w, out_h), interpolation=interpolation)
        for transform in self.rest:
            if type(transform) is A.HorizontalFlip:
                # Albumentations' own decision (should_apply draws from the transform's random
                # state) and its cv2.flip, minus the per-call bookkeeping that costs a few
                # times the flip itself (~2% of a sample's CPU time).
                if transform.should_apply():
                    image = cv2.flip(image, 1)
            else:
                image = transform(image=image)["image"]
        return image


def _max_size(transform: Any) -> int | None:
    size = getattr(transform, "max_size", None)
    if size is None:
        return None
    if isinstance(size, (list, tuple)):
        return max(size)
    return int(size)
