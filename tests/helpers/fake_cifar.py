"""Write CIFAR-10 "python version" files in exactly the official byte format, for tests.

Python-2 protocol-2 pickles (``str`` opcodes for bytes, ``numpy.core`` names), so the
loader is tested on the same bytes the official archive holds.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from litvision.datamodules.readers.cifar_pickle import (
    _RECONSTRUCT,
    _ROW_LEN,
    CIFAR10_DIRNAME,
    META_FILE,
    TEST_FILES,
    TRAIN_FILES,
)

# The official label order (batches.meta's label_names); the loader reads names from the files.
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class _Py2Pickler(pickle._Pickler):  # pure-Python pickler: lets us override per-type writers
    """Protocol-2 pickler that writes bytes as py2 ``str`` opcodes, like the original files.

    CPython's protocol-2 bytes encoding goes through ``_codecs.encode``; the original
    files use SHORT_BINSTRING/BINSTRING, and name ``numpy.core.multiarray._reconstruct``
    (numpy>=2 would write ``numpy._core``, unloadable by numpy 1.x).
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_bytes

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is _RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _dump_py2(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def _as_bytes(value: Any) -> Any:
    return value.encode("utf-8") if isinstance(value, str) else value


def write_batch(
    path: str | Path,
    images_hwc_uint8: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    extra: dict[str | bytes, Any] | None = None,
) -> None:
    """Write one batch file (keys batch_label, labels, data, filenames) in the official format."""
    path = Path(path)
    images = np.asarray(images_hwc_uint8)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"images must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}")
    labels_list = [int(x) for x in np.asarray(labels).reshape(-1)]
    if len(labels_list) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels_list)} labels")
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), _ROW_LEN))
    d: dict[bytes, Any] = {
        b"batch_label": f"{path.name} (litvision)".encode(),
        b"labels": labels_list,
        b"data": data,
        b"filenames": [f"{path.name}_{i:05d}.png".encode() for i in range(len(images))],
    }
    for k, v in (extra or {}).items():
        d[_as_bytes(k)] = _as_bytes(v)
    _dump_py2(d, path)


def write_meta(path: str | Path, names: Sequence[str], num_cases_per_batch: int = 10000) -> None:
    """Write ``batches.meta`` (label_names, num_cases_per_batch, num_vis) in the official format."""
    d = {
        b"num_cases_per_batch": int(num_cases_per_batch),
        b"label_names": [_as_bytes(n) for n in names],
        b"num_vis": _ROW_LEN,
    }
    _dump_py2(d, Path(path))


def _class_color(c: int) -> np.ndarray:
    """Well-separated mean RGB per class so a tiny model can learn the fake data."""
    return np.array([(c * 97 + 30) % 256, (c * 151 + 80) % 256, (c * 59 + 160) % 256], np.float32)


def _fake_images(labels: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    base = np.stack([_class_color(int(c)) for c in labels]) if len(labels) else np.zeros((0, 3))
    imgs = base[:, None, None, :] + rng.normal(0.0, noise, size=(len(labels), 32, 32, 3))
    return np.clip(np.rint(imgs), 0, 255).astype(np.uint8)


def write_fake_cifar(
    root_dir: str | Path,
    n_train_per_class: int = 10,
    n_test_per_class: int = 4,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    noise: float = 12.0,
) -> Path:
    """Write a tiny, deterministic ``cifar-10-batches-py`` tree; returns that folder.

    Class ``c`` images are a class-specific mean colour plus Gaussian noise.
    """
    names = list(class_names) if class_names is not None else list(CIFAR10_CLASSES)
    out = Path(root_dir) / CIFAR10_DIRNAME
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    train_labels = rng.permutation(np.repeat(np.arange(len(names)), n_train_per_class))
    train_images = _fake_images(train_labels, rng, noise)
    chunks = np.array_split(np.arange(len(train_labels)), len(TRAIN_FILES))
    for name, idx in zip(TRAIN_FILES, chunks, strict=True):
        write_batch(out / name, train_images[idx], train_labels[idx])

    test_labels = rng.permutation(np.repeat(np.arange(len(names)), n_test_per_class))
    write_batch(out / TEST_FILES[0], _fake_images(test_labels, rng, noise), test_labels)
    write_meta(out / META_FILE, names, num_cases_per_batch=max(len(c) for c in chunks))
    return out
