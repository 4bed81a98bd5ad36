"""Read and write the official CIFAR-10 "python version" batch files.

The files (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``,
``batches.meta``) are Python-2 pickles.  Plain ``pickle.load`` would execute
any global a tampered file names, so every file goes through
:class:`RestrictedUnpickler`, which only resolves the few numpy/builtin
globals these files need.  The writers exist so tests can generate tiny
datasets in exactly the official byte format.
"""

from __future__ import annotations

import builtins
import io
import pickle
import struct
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_DIRNAME",
    "META_FILE",
    "TEST_FILES",
    "TRAIN_FILES",
    "UnsafePickleError",
    "RestrictedUnpickler",
    "expected_layout",
    "load_batch",
    "load_class_names",
    "load_split",
    "missing_files",
    "resolve_cifar_dir",
    "write_batch",
    "write_fake_cifar",
    "write_meta",
]

CIFAR10_DIRNAME = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
META_FILE = "batches.meta"
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]

IMAGE_SIZE = 32
_ROW_LEN = 3 * IMAGE_SIZE * IMAGE_SIZE  # 1024 R, then 1024 G, then 1024 B


class UnsafePickleError(pickle.UnpicklingError):
    """A CIFAR file references a global outside the allow-list (nothing was executed)."""


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
            raise pickle.UnpicklingError(f"{path}: not a readable CIFAR pickle ({e!r})") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _decode_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def load_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)``: uint8 ``(N, 32, 32, 3)`` HWC RGB and int64 ``(N,)``."""
    path = Path(path)
    d = _unpickle(path)
    for key in ("data", "labels"):
        if key not in d:
            raise ValueError(f"{path}: missing key {key!r} (found {sorted(map(str, d))})")
    data, labels = d["data"], d["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        got = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' must be a uint8 numpy array, got {got}")
    if data.ndim != 2 or data.shape[1] != _ROW_LEN:
        raise ValueError(f"{path}: 'data' must have shape (N, {_ROW_LEN}), got {data.shape}")
    try:
        labels_arr = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: 'labels' must be a list of ints ({e})") from e
    if len(labels_arr) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {len(labels_arr)} labels")
    if len(labels_arr) and labels_arr.min() < 0:
        raise ValueError(f"{path}: negative label {labels_arr.min()}")
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
        raise FileNotFoundError(
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
        raise ValueError(f"{path}: 'label_names' must be a non-empty list, got {names!r}")
    return [_decode_str(n) for n in names]


def load_split(root_dir: str | Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the train (data_batch_1..5) or test (test_batch) batches."""
    files = TRAIN_FILES if train else TEST_FILES
    cdir = _require(root_dir, [*files, META_FILE])
    num_classes = len(load_class_names(root_dir))
    parts = [load_batch(cdir / name) for name in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if len(labels) and labels.max() >= num_classes:
        raise ValueError(
            f"{cdir}: label {labels.max()} out of range for {num_classes} classes in {META_FILE}"
        )
    return images, labels


# -- writing (official format) -------------------------------------------------


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
    for name, idx in zip(TRAIN_FILES, chunks):
        write_batch(out / name, train_images[idx], train_labels[idx])

    test_labels = rng.permutation(np.repeat(np.arange(len(names)), n_test_per_class))
    write_batch(out / TEST_FILES[0], _fake_images(test_labels, rng, noise), test_labels)
    write_meta(out / META_FILE, names, num_cases_per_batch=max(len(c) for c in chunks))
    return out

