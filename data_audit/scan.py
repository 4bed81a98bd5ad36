"""One pass over a source split's pixels: what the health and duplicate sections need of every image.

Each image is read and decoded once (:func:`litvision.datamodules.readers.decode.decode_image`, the decoder
training uses, so "unreadable" means unreadable to a run) and reduced to: its size, file format and
problems, a hash of its decoded pixels (exact duplicates), and a small grayscale thumbnail (near
duplicates). File datasets are scanned by ``num_workers`` processes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from litvision.data_audit.sources import SourceSplit
from litvision.datamodules.readers.decode import (
    DEFAULT_MAX_IMAGE_PIXELS,
    BadImageError,
    ImageTooLargeError,
    decode_image,
    is_truncated_jpeg,
    jpeg_header,
)

log = logging.getLogger(__name__)

CHUNK = 256  # files per task sent to a worker process

# problems a file can have (health section); a file may have several. oversized: the header claims
# more than dataset.max_image_pixels or sides over 100:1 (a decompression bomb): a run skips it too.
UNREADABLE, TRUNCATED, OVERSIZED, GRAYSCALE, CMYK, PNG_NAMED_JPEG, WRONG_EXTENSION = (
    "unreadable",
    "truncated",
    "oversized",
    "grayscale",
    "cmyk",
    "png_named_jpeg",
    "wrong_extension",
)
ISSUES = (UNREADABLE, TRUNCATED, OVERSIZED, GRAYSCALE, CMYK, PNG_NAMED_JPEG, WRONG_EXTENSION)

_EXTENSION_FORMATS = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".png": "png",
    ".gif": "gif",
    ".bmp": "bmp",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
}


@dataclass
class ScanResult:
    """Per image of one split, in split order."""

    split: str
    ids: np.ndarray  # str
    width: np.ndarray  # int32, 0 when unreadable
    height: np.ndarray
    file_format: np.ndarray  # str: jpeg, png, ... ("array" for in-memory data, "" when unknown)
    issues: list[list[tuple[str, str]]]  # [(issue, detail)] per image
    pixel_hash: np.ndarray  # str, hex digest of the decoded pixels; "" when unreadable
    thumbnails: np.ndarray  # uint8 (N, S, S) grayscale

    @property
    def readable(self) -> np.ndarray:
        return self.pixel_hash != ""


def sniff_format(data: bytes) -> str:
    """The image format from the file's first bytes ("" if unknown)."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return ""


def pixel_digest(image: np.ndarray) -> str:
    """Hash of the decoded pixels and their shape: equal for byte-identical images whatever the file."""
    image = np.ascontiguousarray(image)
    digest = hashlib.blake2b(str(image.shape).encode(), digest_size=16)
    digest.update(image.data)
    return digest.hexdigest()


def gray_thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` grayscale uint8 (area-averaged when shrinking; the aspect ratio is not kept)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    if gray.shape != (size, size):
        gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)
    return gray


def inspect_file(path: bytes, thumbnail_size: int, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> tuple:
    """(width, height, format, issues, pixel hash, thumbnail) of one image file; ``max_pixels``
    is the dataset's pixel budget (the decode refuses what a run would refuse)."""
    issues: list[tuple[str, str]] = []
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return 0, 0, "", [(UNREADABLE, f"cannot read ({e})")], "", np.zeros((thumbnail_size,) * 2, np.uint8)
    file_format = sniff_format(data)
    expected = _EXTENSION_FORMATS.get(os.path.splitext(os.fsdecode(path))[1].lower())
    if file_format and expected and file_format != expected:
        issue = PNG_NAMED_JPEG if (file_format, expected) == ("png", "jpeg") else WRONG_EXTENSION
        issues.append((issue, f"{file_format.upper()} data named .{os.fsdecode(path).rsplit('.', 1)[-1]}"))
    header = jpeg_header(data) if file_format == "jpeg" else None
    if header is not None and header.components == 4:
        issues.append((CMYK, "4-component (CMYK/YCCK) JPEG"))
    if header is not None and is_truncated_jpeg(data, header):
        issues.append((TRUNCATED, "no end-of-image marker after the scan data"))
        return 0, 0, file_format, issues, "", np.zeros((thumbnail_size,) * 2, np.uint8)
    try:
        image = decode_image(data, header=header, max_pixels=max_pixels)
    except BadImageError as e:
        issues.append((OVERSIZED if isinstance(e, ImageTooLargeError) else UNREADABLE, str(e)))
        return 0, 0, file_format, issues, "", np.zeros((thumbnail_size,) * 2, np.uint8)
    if (header is not None and header.components == 1) or _is_gray(image):
        issues.append((GRAYSCALE, "1-component JPEG" if header is not None and header.components == 1 else "R = G = B"))
    height, width = image.shape[:2]
    return width, height, file_format, issues, pixel_digest(image), gray_thumbnail(image, thumbnail_size)


def _is_gray(image: np.ndarray) -> bool:
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))


def _inspect_chunk(args: tuple[bytes, list[bytes], int, int | None]) -> list[tuple]:
    root, paths, thumbnail_size, max_pixels = args
    cv2.setNumThreads(1)  # the worker processes already use the cores
    return [inspect_file(os.path.join(root, path), thumbnail_size, max_pixels) for path in paths]


def _chunks(split: SourceSplit, thumbnail_size: int) -> Iterator[tuple[bytes, list[bytes], int, int | None]]:
    paths = split.dataset.paths
    max_pixels = getattr(split.dataset, "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS)
    for start in range(0, len(paths), CHUNK):
        yield split.dataset.root, [bytes(p) for p in paths[start : start + CHUNK]], thumbnail_size, max_pixels


def scan_split(split: SourceSplit, thumbnail_size: int = 32, num_workers: int = 0) -> ScanResult:
    """Decode every image of ``split`` once; see :class:`ScanResult`."""
    if not split.is_files:
        return _scan_arrays(split, thumbnail_size)
    n = len(split)
    log.info("audit: scanning %d image files of source split %r (%d processes)", n, split.name, num_workers)
    records: list[tuple] = []
    if num_workers > 0 and n > CHUNK:
        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            for part in pool.map(_inspect_chunk, _chunks(split, thumbnail_size)):
                records += part
                _progress(split.name, len(records), n)
    else:
        for chunk in _chunks(split, thumbnail_size):
            records += _inspect_chunk(chunk)
            _progress(split.name, len(records), n)
    width, height, file_format, issues, digest, thumbs = zip(*records, strict=True) if records else ([],) * 6
    return ScanResult(
        split=split.name,
        ids=split.ids,
        width=np.asarray(width, np.int32),
        height=np.asarray(height, np.int32),
        file_format=np.asarray(file_format, dtype=str),
        issues=list(issues),
        pixel_hash=np.asarray(digest, dtype=str),
        thumbnails=np.stack(thumbs) if thumbs else np.zeros((0, thumbnail_size, thumbnail_size), np.uint8),
    )


def _progress(name: str, done: int, total: int) -> None:
    step = max(CHUNK, total // 10)
    if done % step < CHUNK or done == total:
        log.info("audit: %s %d/%d images scanned", name, done, total)


def _scan_arrays(split: SourceSplit, thumbnail_size: int) -> ScanResult:
    """In-memory images (CIFAR): nothing to decode, every image is readable."""
    images = split.dataset.images
    n = len(images)
    height, width = images.shape[1:3]
    return ScanResult(
        split=split.name,
        ids=split.ids,
        width=np.full(n, width, np.int32),
        height=np.full(n, height, np.int32),
        file_format=np.full(n, "array"),
        issues=[[] for _ in range(n)],
        pixel_hash=np.asarray([pixel_digest(image) for image in images], dtype=str),
        thumbnails=np.stack([gray_thumbnail(image, thumbnail_size) for image in images])
        if n
        else np.zeros((0, thumbnail_size, thumbnail_size), np.uint8),
    )
