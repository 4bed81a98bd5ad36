"""Read the official CIFAR-10 "python version" batch files.

The files (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``,
``batches.meta``) are Python-2 pickles.  Plain ``pickle.load`` would execute
any global a tampered file names, so every file goes through
:class:`RestrictedUnpickler`, which only resolves the few numpy/builtin
globals these files need.
"""

from __future__ import annotations

import builtins
import io
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from litvision.utils.errors import DataError, MissingDataError

__all__ = [
    "CIFAR10_DIRNAME",
    "META_FILE",
    "TEST_FILES",
    "TRAIN_FILES",
    "UnreadablePickleError",
    "UnsafePickleError",
    "RestrictedUnpickler",
    "expected_layout",
    "load_batch",
    "load_class_names",
    "load_split",
    "missing_files",
    "resolve_cifar_dir",
]

CIFAR10_DIRNAME = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
META_FILE = "batches.meta"

IMAGE_SIZE = 32
_ROW_LEN = 3 * IMAGE_SIZE * IMAGE_SIZE  # 1024 R, then 1024 G, then 1024 B


class UnsafePickleError(DataError, pickle.UnpicklingError):
    """A CIFAR file references a global outside the allow-list (nothing was executed)."""


class UnreadablePickleError(DataError, pickle.UnpicklingError):
    """A CIFAR file that is not a readable pickle (truncated, garbled, another format)."""


# -- restricted loading --------------------------------------------------------

# Take the callables from numpy itself instead of importing ``numpy.core``
# (a deprecated shim in numpy 2) so the allow-list works on numpy 1.x and 2.x.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_SCALAR = np.int64(0).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]


def _latin1_codecs_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode`` as used by Python-3 protocol-2 pickles of bytes."""
    if encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    # ndarray / dtype reconstruction (py2 files name numpy.core; numpy>=2 writes numpy._core).
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python-3-written protocol-2 pickles encode bytes via _codecs.encode(str, "latin1").
    ("_codecs", "encode"): _latin1_codecs_encode,
    # Inert container/value constructors. Overriding find_class skips pickle's py2 name
    # mapping, so Python-2 files name these "__builtin__" and we list both spellings.
    **{
        (module, name): getattr(builtins, name)
        for module in ("builtins", "__builtin__")
        for name in ("bytearray", "complex", "dict", "frozenset", "list", "set", "tuple")
    },
    ("builtins", "bytes"): bytes,  # py3 protocol-2 spelling of b""
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals CIFAR batch files need."""

    def __init__(self, file: io.BufferedIOBase, source: str | Path = "<stream>") -> None:
        super().__init__(file, encoding="bytes")
        self._source = str(source)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing to load forbidden global '{module}.{name}'. "
                "Genuine CIFAR-10 files only contain numpy arrays, lists and strings; "
                "this file may be corrupt or malicious. Re-download it from the official source."
            ) from None


def _unpickle(path: Path) -> dict[str, Any]:
    """Load one pickle safely and normalise bytes keys to str."""
    with open(path, "rb") as f:
        try:
            obj = RestrictedUnpickler(f, source=path).load()
        except UnsafePickleError:
            raise
        except Exception as e:  # truncated/garbled files surface as many exception types
            raise UnreadablePickleError(f"{path}: not a readable CIFAR pickle ({e!r})") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _decode_str(value: Any, path: Path, position: int) -> str:
    if not isinstance(value, bytes):
        return str(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: class name #{position} {value!r} is not UTF-8 text ({e.reason} at byte {e.start}); "
            "write label_names as UTF-8"
        ) from None


def _labels(path: Path, labels: Any) -> np.ndarray:
    """``labels`` as int64, refusing what ``np.asarray(..., int64)`` would silently truncate."""
    values = labels.reshape(-1).tolist() if isinstance(labels, np.ndarray) else labels
    if not isinstance(values, (list, tuple)):
        raise DataError(f"{path}: 'labels' must be a list of integers, got {type(labels).__name__}")
    for position, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise DataError(
                f"{path}: label #{position} is {value!r} ({type(value).__name__}), not an integer class index; "
                "CIFAR labels must be integers (a re-pack that wrote floats would be truncated)"
            )
    try:
        return np.asarray(values, dtype=np.int64)
    except OverflowError:
        huge = max(values, key=abs)
        raise DataError(f"{path}: label {huge} is not a class index (outside the int64 range)") from None


def load_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)``: uint8 ``(N, 32, 32, 3)`` HWC RGB and int64 ``(N,)``."""
    path = Path(path)
    d = _unpickle(path)
    for key in ("data", "labels"):
        if key not in d:
            raise DataError(f"{path}: missing key {key!r} (found {sorted(map(str, d))})")
    data, labels = d["data"], d["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        got = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 numpy array, got {got}")
    if data.ndim != 2 or data.shape[1] != _ROW_LEN:
        raise DataError(f"{path}: 'data' must have shape (N, {_ROW_LEN}), got {data.shape}")
    labels_arr = _labels(path, labels)
    if len(labels_arr) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels_arr)} labels")
    if len(labels_arr) and labels_arr.min() < 0:
        raise DataError(f"{path}: negative label {labels_arr.min()}")
    # Row = 1024 R | 1024 G | 1024 B, each plane row-major 32x32 -> NCHW -> NHWC.
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels_arr


def resolve_cifar_dir(root_dir: str | Path) -> Path:
    """Map a data_dir to its ``cifar-10-batches-py`` folder (also accepts that folder itself)."""
    root = Path(root_dir).expanduser()
    if root.name == CIFAR10_DIRNAME and not (root / CIFAR10_DIRNAME).exists():
        return root
    return root / CIFAR10_DIRNAME


def expected_layout(root_dir: str | Path | None = None) -> str:
    """Human-readable description of the on-disk layout, for error messages."""
    where = f" (data_dir={Path(root_dir)})" if root_dir is not None else ""
    return (
        f"<data_dir>/{CIFAR10_DIRNAME}/{{data_batch_1..5,test_batch,{META_FILE}}}{where}. "
        "To use CIFAR-10 you already have, pass the Hydra override dataset.data_dir=PATH "
        f"where PATH is the folder that contains {CIFAR10_DIRNAME}/"
    )


def missing_files(root_dir: str | Path, names: Iterable[str] | None = None) -> list[str]:
    """Names (default: all CIFAR-10 files) absent from the resolved batches folder."""
    cdir = resolve_cifar_dir(root_dir)
    names = list(names) if names is not None else [*TRAIN_FILES, *TEST_FILES, META_FILE]
    return [n for n in names if not (cdir / n).is_file()]


def _require(root_dir: str | Path, names: list[str]) -> Path:
    missing = missing_files(root_dir, names)
    if missing:
        raise MissingDataError(
            f"CIFAR-10 files not found in {resolve_cifar_dir(root_dir)}: missing {missing}. "
            f"Expected layout: {expected_layout(root_dir)}."
        )
    return resolve_cifar_dir(root_dir)


def load_class_names(root_dir: str | Path) -> list[str]:
    """Class names from ``batches.meta``, index == label."""
    path = _require(root_dir, [META_FILE]) / META_FILE
    d = _unpickle(path)
    names = d.get("label_names")
    if not isinstance(names, list) or not names:
        raise DataError(f"{path}: 'label_names' must be a non-empty list, got {names!r}")
    return [_decode_str(name, path, position) for position, name in enumerate(names)]


def load_split(root_dir: str | Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the train (data_batch_1..5) or test (test_batch) batches."""
    files = TRAIN_FILES if train else TEST_FILES
    cdir = _require(root_dir, [*files, META_FILE])
    num_classes = len(load_class_names(root_dir))
    parts = [load_batch(cdir / name) for name in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if len(labels) and labels.max() >= num_classes:
        worst = next(
            name for name, (_, part) in zip(files, parts, strict=True) if len(part) and part.max() == labels.max()
        )
        raise DataError(
            f"{cdir / worst}: label {labels.max()} out of range for the {num_classes} classes in {cdir / META_FILE}"
        )
    return images, labels
