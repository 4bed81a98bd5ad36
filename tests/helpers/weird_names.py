"""A class-folder tree whose folder and file names are the ones people really have.

Names that are not UTF-8 (old archives: ``caf\\xe9`` in latin-1), with a tab, a newline, a
backslash, a leading ``#``, ``=``, ``-``, ``@`` or space, written with bytes paths. Every val image
but ``plain.png`` is an exact copy of the train image of the same name (the audit's duplicates
section pairs them, and the clean split drops the val copies); one file per split is unreadable.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

CLASSES = [b"caf\xe9", b"=SUM(1+1)", b"tab\there", b"back\\slash"]
FILES = [
    b"img\xff.png",
    b"=HYPERLINK(1).png",
    b"-2.png",
    b"@x.png",
    b"tab\tname.png",
    b"back\\slash.png",
    b"#hash.png",
    b" lead.png",
    b"new\nline.png",
    b"plain.png",
]
BROKEN = {b"train": (b"caf\xe9", b"broken\xfe.png"), b"val": (b"=SUM(1+1)", b"broken\xfe.png")}
SIZE = 32


def _png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def build_weird_tree(root: Path, seed: int = 0) -> Path:
    """ROOT/{train,val}/<class>/<file> (see the module docstring); returns ROOT."""
    rng = np.random.default_rng(seed)
    base = os.fsencode(root)
    for c, name in enumerate(CLASSES):
        colour = np.array([(c * 97 + 30) % 256, (c * 151 + 80) % 256, (c * 59 + 160) % 256], np.float32)
        for file in FILES:
            train = np.clip(colour + rng.normal(0, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            val = (
                train
                if file != b"plain.png"
                else np.clip(colour + rng.normal(0, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            )
            for split, image in ((b"train", train), (b"val", val)):
                folder = os.path.join(base, split, name)
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, file), "wb") as handle:
                    handle.write(_png(image))
    for split, (name, file) in BROKEN.items():
        with open(os.path.join(base, split, name, file), "wb") as handle:
            handle.write(b"\x89PNG\r\n\x1a\n not an image")
    return root


def file_ids(split: bytes) -> set[str]:
    """The ids of a split's files as litvision keeps them (``os.fsdecode`` of the path under ROOT)."""
    files = {os.path.join(split, name, file) for name in CLASSES for file in FILES} | {
        os.path.join(split, *BROKEN[split])
    }
    return {os.fsdecode(path) for path in files}


def broken_id(split: bytes) -> str:
    return os.fsdecode(os.path.join(split, *BROKEN[split]))


def copied_val_ids() -> set[str]:
    """The val images that are exact copies of a train image."""
    return {os.fsdecode(os.path.join(b"val", name, file)) for name in CLASSES for file in FILES if file != b"plain.png"}
