"""Decompression bombs, built without ever holding their pixels: tiny files whose headers claim
images a loader worker cannot afford to decode (issue 17 item 4)."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 8-bit grayscale PNG of ``width`` x ``height`` black pixels (30000x30000: ~870 KB
    on disk, 2.7 GB once decoded to RGB), in milliseconds: all-zero rows compress to the same
    bytes after every full flush (the compressor forgets its window), so one block of rows is
    compressed and repeated, and the Adler-32 of n zero bytes is ((n mod 65521) << 16) | 1."""
    rows_per_block = 100
    assert height % rows_per_block == 0
    block = bytes((width + 1) * rows_per_block)  # per row: filter byte 0 + one byte per pixel
    compressor = zlib.compressobj(9)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeat = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert first.endswith(repeat) and len(first) == len(repeat) + 2  # + the 2-byte zlib header
    end = compressor.flush()[:-4]  # the final (empty) block, without the Adler-32 of 2 blocks
    total = (width + 1) * height
    stream = first + repeat * (height // rows_per_block - 1) + end + struct.pack(">I", ((total % 65521) << 16) | 1)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


def jpeg_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A few-hundred-byte 8x8 JPEG whose start-of-frame header is patched to claim ``width`` x
    ``height``: libjpeg allocates the claimed size and fills what the data lacks."""
    ok, encoded = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))
    assert ok
    data = bytearray(encoded.tobytes())
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def wide_png(width: int = 200000, height: int = 1) -> bytes:
    """A small, honest PNG with an absurd aspect ratio: a shorter-side resize would blow it up."""
    ok, encoded = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok
    return encoded.tobytes()
