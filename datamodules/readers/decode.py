"""Decode image files to RGB uint8, fast (libjpeg-turbo via OpenCV) and robust to real-world files.

ILSVRC-2012 train alone holds CMYK JPEGs, grayscale JPEGs and a PNG saved with a ``.JPEG``
name; scraped datasets add truncated and zero-byte files. Everything decodable comes out as
3-channel RGB; everything else raises :class:`BadImageError` naming the reason, and
:class:`BadImageLog` applies the ``on_bad_image`` policy (raise, or skip and count, logging
each file once) across DataLoader worker processes.

Decompression bombs (a 875 KB PNG or a 633-byte JPEG whose header says 30000x30000: 2.7 GB of
RGB per decode, in every loader worker) are refused from the header alone by
:func:`check_image_size`, before anything is allocated: over ``max_pixels``
(``dataset.max_image_pixels``) or with a side more than :data:`MAX_ASPECT_RATIO` times the
other (a 200000x1 PNG is 600 KB decoded, but the eval resize would make it 39 GB). Every path
that decodes (training, evaluation, ``predict.py``, the audit, ``prepare_shards.py``, shards
read back) goes through :func:`decode_image`, so they all reach the same verdict.

Reduced-size decoding (libjpeg's DCT scaling, ``cv2.IMREAD_REDUCED_COLOR_{2,4,8}``) skips most
of the IDCT work for large images; callers choose the reduction with :func:`largest_reduction`
from the header size, so that it never lowers the resolution of what they output.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from dataclasses import dataclass
from typing import Any, Literal, cast

import cv2
import numpy as np
import torch

from litvision.utils.errors import ConfigError

log = logging.getLogger(__name__)

BadImagePolicy = Literal["raise", "skip"]
POLICIES = ("raise", "skip")

# Pillow's own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS): 268 MB as RGB uint8, so a
# decode plus the colour conversion and first resize stays well under 1 GB per loader worker.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
# Longest side / shortest side above which an image is refused: real photos and panoramas stay
# far below (ILSVRC-2012's widest is about 10:1); past it a resize to a shorter-side target
# (SmallestMaxSize, RandomResizedCrop's scale) asks for memory in proportion to the ratio.
MAX_ASPECT_RATIO = 100
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# RGB output (no BGR->RGB pass), and no EXIF rotation: torchvision/PIL pipelines ignore EXIF
# orientation too, and the header size we plan crops with must be the decoded size.
_BASE_FLAGS = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
# IMREAD_REDUCED_COLOR_* include the IMREAD_COLOR (BGR) bit, which OpenCV refuses together
# with IMREAD_COLOR_RGB; keep only their reduction bits.
_REDUCE_FLAGS = {
    1: 0,
    2: cv2.IMREAD_REDUCED_COLOR_2 & ~cv2.IMREAD_COLOR,
    4: cv2.IMREAD_REDUCED_COLOR_4 & ~cv2.IMREAD_COLOR,
    8: cv2.IMREAD_REDUCED_COLOR_8 & ~cv2.IMREAD_COLOR,
}
# Start-of-frame markers (baseline, extended, progressive, lossless, arithmetic variants).
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: no length field


class BadImageError(RuntimeError):
    """An image file that cannot be decoded (empty, truncated, corrupt, unknown format)."""


class ImageTooLargeError(BadImageError):
    """An image whose header claims more pixels (or a more extreme shape) than a decode may cost."""


@dataclass(frozen=True)
class JpegHeader:
    height: int
    width: int
    components: int  # 1 grayscale, 3 YCbCr/RGB, 4 CMYK/YCCK
    scan_offset: int  # where the first scan's entropy-coded data starts


def jpeg_header(data: bytes | memoryview) -> JpegHeader | None:
    """Size and layout of a JPEG from its marker segments, or None if ``data`` is not a JPEG.

    Walks the few segments before the first scan (microseconds), so a crop can be planned
    before decoding. Anything unexpected returns None and the caller decodes in full.
    """
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    i = 2
    height = width = components = None
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE_MARKERS:
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if i + 10 > n:
                return None
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            components = data[i + 9]
        elif marker == 0xDA:  # start of scan
            if height is None or not height or not width or components is None:
                return None
            return JpegHeader(height, width, components, i + 2 + length)
        elif marker == 0xD9:  # end of image before any scan
            return None
        i += 2 + length
    return None


def is_truncated_jpeg(data: bytes, header: JpegHeader) -> bool:
    """True if no end-of-image marker follows the first scan.

    Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so an
    EOI (FF D9) after the scan start is the real end; files cut off in transfer lack it.
    Searching from the end makes this O(1) for intact files (trailing padding aside).
    """
    return data.rfind(b"\xff\xd9", header.scan_offset) < 0


def largest_reduction(height: int, width: int, min_height: int, min_width: int) -> int:
    """The largest DCT reduction f in (8, 4, 2, 1) keeping a ``height x width`` region at least
    ``min_height x min_width`` pixels after decoding at 1/f scale.

    Uses floor division although libjpeg rounds scaled sizes up: conservative by < 1 pixel.
    """
    for factor in (8, 4, 2):
        if height // factor >= min_height and width // factor >= min_width:
            return factor
    return 1


def check_pixel_budget(max_pixels: Any) -> int | None:
    """``dataset.max_image_pixels`` as given: a positive int, or None (no pixel budget)."""
    if max_pixels is None or (isinstance(max_pixels, int) and not isinstance(max_pixels, bool) and max_pixels > 0):
        return max_pixels
    raise ConfigError(
        f"dataset.max_image_pixels={max_pixels!r}: give a positive number of pixels (default "
        f"{DEFAULT_MAX_IMAGE_PIXELS}, Pillow's bomb limit) or null for no budget"
    )


def header_size(data: bytes | memoryview, header: JpegHeader | None = None) -> tuple[int, int] | None:
    """(width, height) as the file's header states it, without decoding; None if unreadable.

    JPEG: our own marker walk (:func:`jpeg_header`, needed anyway for the reduced decode). PNG:
    the IHDR chunk, which the format puts first (libpng refuses a file where it is not); parsed
    here rather than by Pillow because Pillow's ``open`` applies its own bomb limit (which would
    override a larger ``max_pixels``) and gives no size when it does. Anything else, and JPEGs
    the marker walk gives up on: Pillow's ``Image.open``, which is lazy and reads only the header.
    """
    if header is None:
        header = jpeg_header(data)
    if header is not None:
        return header.width, header.height
    if bytes(data[:8]) == _PNG_SIGNATURE and len(data) >= 24 and bytes(data[12:16]) == b"IHDR":
        width, height = struct.unpack(">II", bytes(data[16:24]))
        return width, height
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we decide below
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"the header claims a decompression bomb ({e})") from e
    except Exception:  # Pillow raises many types (UnidentifiedImageError, SyntaxError, struct.error, ...)
        return None


def check_image_size(
    data: bytes | memoryview,
    max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    header: JpegHeader | None = None,
) -> tuple[int, int]:
    """The one verdict on an image's size, from its header, before any pixel is allocated.

    Returns (width, height). ``max_pixels`` None lifts the pixel budget (not the aspect-ratio
    bound, nor the need for a readable header: a file whose size is unknown cannot be checked,
    and OpenCV decodes formats, e.g. Radiance HDR, that no header reader here knows).

    Raises:
        ImageTooLargeError: more than ``max_pixels`` pixels, or sides more than
            :data:`MAX_ASPECT_RATIO` to 1.
        BadImageError: no size readable from the header (unknown format or damaged header).
    """
    size = header_size(data, header)
    if size is None:
        raise BadImageError("cannot decode (unknown image format, or no size in its header)")
    width, height = size
    if width < 1 or height < 1:
        raise BadImageError(f"the header claims {width}x{height} pixels (an empty image)")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"the header claims {width}x{height} = {width * height:,} pixels, over the budget of "
            f"dataset.max_image_pixels={max_pixels} (a decompression bomb, or raise the budget if this "
            "machine can afford the decode)"
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageTooLargeError(
            f"the header claims {width}x{height} pixels: sides more than {MAX_ASPECT_RATIO} to 1, which a "
            "resize to a shorter-side target would blow up"
        )
    return width, height


def decode_image(
    data: bytes,
    reduction: int = 1,
    header: JpegHeader | None = None,
    max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Decode any supported image to an RGB uint8 HxWx3 array, optionally at 1/``reduction`` scale.

    OpenCV (libjpeg-turbo, SIMD) handles JPEG incl. grayscale and CMYK, and PNG/WebP/BMP/TIFF
    whatever the file name says; Pillow is the fallback for the rest (e.g. GIF). ``reduction``
    must be 1 unless ``data`` is a JPEG (callers derive it from :func:`jpeg_header`). The size
    is checked first (:func:`check_image_size`, on the full size whatever the reduction: a
    progressive JPEG's coefficients are held at full size).

    Raises:
        BadImageError: empty, truncated, too large (:class:`ImageTooLargeError`) or undecodable data.
    """
    if not data:
        raise BadImageError("empty file (0 bytes)")
    if reduction not in _REDUCE_FLAGS:
        raise ValueError(f"reduction must be one of {sorted(_REDUCE_FLAGS)}, got {reduction}")
    if header is None:
        header = jpeg_header(data)
    if header is not None and is_truncated_jpeg(data, header):
        raise BadImageError("truncated JPEG (no end-of-image marker after the scan data)")
    check_image_size(data, max_pixels, header)
    if header is None:
        reduction = 1  # DCT scaling exists only for JPEG
    image = None
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), _BASE_FLAGS | _REDUCE_FLAGS[reduction])
    except cv2.error:
        image = None
    if image is None:
        image = _decode_with_pil(data, reduction)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    if image.dtype != np.uint8:  # e.g. 16-bit PNG through the fallback
        top = np.iinfo(cast("np.dtype[np.integer]", image.dtype)).max  # the decoders give integer images only
        image = (image / (top / 255.0)).round().astype(np.uint8)
    return image


def _decode_with_pil(data: bytes, reduction: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if reduction > 1:
                im.draft("RGB", (max(1, im.width // reduction), max(1, im.height // reduction)))
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        raise BadImageError(f"cannot decode ({type(e).__name__}: {e})") from e


class BadImageLog:
    """Which files failed to decode, shared by all DataLoader workers of one dataset.

    A byte per file in shared memory (1.3 MB for ImageNet-1k train): each bad file is logged
    once (not once per worker or epoch), is not decoded again after the first failure, and
    the main process can count them for the epoch log. Setting a byte is idempotent, so no
    lock is needed.

    Args:
        num_files: size of the file index this log covers.
        policy: ``raise`` stops at the first bad file with its path; ``skip`` records it and
            lets the dataset drop or replace the sample.
        name: shown in messages (e.g. ``train``).
    """

    def __init__(self, num_files: int, policy: BadImagePolicy = "skip", name: str = "") -> None:
        if policy not in POLICIES:
            raise ValueError(f"on_bad_image must be one of {POLICIES}, got {policy!r}")
        self.policy = policy
        self.name = name
        self.flags = torch.zeros(max(num_files, 1), dtype=torch.uint8).share_memory_()
        self._view: np.ndarray | None = None

    def __getstate__(self) -> dict:
        # The tensor travels to worker processes as shared memory; a numpy view would be copied.
        return {**self.__dict__, "_view": None}

    @property
    def view(self) -> np.ndarray:
        """numpy view of the shared flags (indexing it is ~15x cheaper than indexing the tensor)."""
        if self._view is None:
            self._view = self.flags.numpy()
        return self._view

    def is_bad(self, file_id: int) -> bool:
        return bool(self.view[file_id])

    def record(self, file_id: int, path: str, reason: str) -> None:
        """Apply the policy to a file that failed to decode."""
        if self.policy == "raise":
            raise BadImageError(
                f"{path}: {reason}. Remove or replace the file, or set dataset.on_bad_image=skip "
                "to skip unreadable images (they are counted and logged once)."
            )
        if not self.view[file_id]:
            self.view[file_id] = 1
            log.warning("skipping unreadable image %s: %s (reported once per file)", path, reason)

    def count(self) -> int:
        return int(self.flags.sum())
