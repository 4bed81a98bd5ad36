"""CIFAR-10 python-pickle reading/writing: layout, safety and the real shared subset."""

from __future__ import annotations

import builtins
import os
import pickle
import pickletools
import warnings
from pathlib import Path

import numpy as np
import pytest

from litvision.datamodules.readers.cifar_pickle import (
    CIFAR10_DIRNAME,
    META_FILE,
    TEST_FILES,
    TRAIN_FILES,
    UnsafePickleError,
    load_batch,
    load_class_names,
    load_split,
)
from tests.helpers.fake_cifar import CIFAR10_CLASSES, write_batch, write_fake_cifar, write_meta

REAL_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-subset"


def _raw_batch(path: Path, data: np.ndarray, labels: list[int], str_keys: bool = False) -> None:
    """Write a batch with plain pickle, independent of write_batch."""
    d = {"data": data, "labels": labels} if str_keys else {b"data": data, b"labels": labels}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


# -- format ------------------------------------------------------------------


def test_constants() -> None:
    assert CIFAR10_DIRNAME == "cifar-10-batches-py"
    assert TRAIN_FILES == ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]
    assert TEST_FILES == ["test_batch"] and META_FILE == "batches.meta"


def test_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(7, 32, 32, 3), dtype=np.uint8)
    labels = [3, 0, 9, 1, 1, 5, 2]
    write_batch(tmp_path / "b", images, labels)
    got_images, got_labels = load_batch(tmp_path / "b")
    assert got_images.dtype == np.uint8 and got_images.shape == (7, 32, 32, 3)
    assert got_images.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.dtype == np.int64 and got_labels.tolist() == labels


def test_written_files_match_official_format(tmp_path: Path) -> None:
    images = np.zeros((2, 32, 32, 3), np.uint8)
    write_batch(tmp_path / "b", images, [1, 2], extra={"batch_label": "custom"})
    write_meta(tmp_path / "m", ["a", "b"])
    raw = (tmp_path / "b").read_bytes()
    ops = list(pickletools.genops(raw))
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    globals_ = {arg for op, arg, _ in ops if op.name in ("GLOBAL", "STACK_GLOBAL")}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    d = pickle.loads(raw, encoding="bytes")
    assert list(d) == [b"batch_label", b"labels", b"data", b"filenames"]
    assert d[b"batch_label"] == b"custom"
    assert d[b"data"].dtype == np.uint8 and d[b"data"].shape == (2, 3072)
    assert d[b"labels"] == [1, 2] and all(isinstance(n, bytes) for n in d[b"filenames"])
    meta = pickle.loads((tmp_path / "m").read_bytes(), encoding="bytes")
    assert meta == {b"num_cases_per_batch": 10000, b"label_names": [b"a", b"b"], b"num_vis": 3072}


def test_pixel_layout_from_hand_built_row(tmp_path: Path) -> None:
    row = np.zeros(3072, np.uint8)
    row[0] = 255  # R plane, (y=0, x=0): top-left red
    row[1024 + 31] = 255  # G plane, (y=0, x=31): top-right green
    row[2048 + 1023] = 255  # B plane, (y=31, x=31): bottom-right blue
    _raw_batch(tmp_path / "b", row[None, :], [4])
    images, labels = load_batch(tmp_path / "b")
    img = images[0]
    assert img[0, 0].tolist() == [255, 0, 0]
    assert img[0, 31].tolist() == [0, 255, 0]
    assert img[31, 31].tolist() == [0, 0, 255]
    assert img[31, 0].tolist() == [0, 0, 0]
    assert int(img.sum()) == 3 * 255 and labels.tolist() == [4]


def test_str_keys_are_accepted(tmp_path: Path) -> None:
    _raw_batch(tmp_path / "b", np.full((2, 3072), 7, np.uint8), [0, 1], str_keys=True)
    images, labels = load_batch(tmp_path / "b")
    assert images.shape == (2, 32, 32, 3) and labels.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("data", "labels", "match"),
    [
        (np.zeros((2, 100), np.uint8), [0, 1], r"shape \(N, 3072\)"),
        (np.zeros((2, 3072), np.float32), [0, 1], "uint8"),
        (np.zeros((2, 3072), np.uint8), [0], "2 images but 1 labels"),
        (np.zeros((1, 3072), np.uint8), [-1], "negative label"),
    ],
)
def test_invalid_batches_name_the_file(tmp_path: Path, data, labels, match: str) -> None:
    path = tmp_path / "bad_batch"
    _raw_batch(path, data, labels)
    with pytest.raises(ValueError, match=match) as exc:
        load_batch(path)
    assert "bad_batch" in str(exc.value)


def test_missing_key(tmp_path: Path) -> None:
    with open(tmp_path / "b", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8)}, f, protocol=2)
    with pytest.raises(ValueError, match="missing key 'labels'"):
        load_batch(tmp_path / "b")


# -- restricted unpickling -----------------------------------------------------


class _Exploit:
    def __init__(self, func, args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payload(kind: str, marker: Path) -> _Exploit:
    if kind == "system":
        return _Exploit(os.system, (f"touch {marker}",))
    if kind == "exec":
        return _Exploit(builtins.exec, (f"open({str(marker)!r}, 'w').close()",))
    return _Exploit(builtins.open, (str(marker), "w"))


@pytest.mark.parametrize(
    ("kind", "global_name"),
    [("system", f"{os.name}.system"), ("exec", "__builtin__.exec"), ("open", "io.open")],
)
def test_malicious_batch_is_refused_without_side_effects(tmp_path: Path, kind: str, global_name: str) -> None:
    cdir = write_fake_cifar(tmp_path, n_train_per_class=1, n_test_per_class=1)
    marker = tmp_path / "pwned"
    payload = _payload(kind, marker)
    # Nested inside an otherwise plausible batch dict.
    with open(cdir / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [payload]}, f, protocol=2)

    for load in (lambda: load_batch(cdir / "data_batch_1"), lambda: load_split(tmp_path, train=True)):
        with pytest.raises(UnsafePickleError) as exc:
            load()
        assert global_name in str(exc.value) and "data_batch_1" in str(exc.value)
        assert not marker.exists()
    assert issubclass(UnsafePickleError, pickle.UnpicklingError)


def test_malicious_meta_is_refused(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path, n_train_per_class=1, n_test_per_class=1)
    marker = tmp_path / "pwned"
    with open(tmp_path / CIFAR10_DIRNAME / META_FILE, "wb") as f:
        pickle.dump({b"label_names": _Exploit(os.system, (f"touch {marker}",))}, f, protocol=2)
    with pytest.raises(UnsafePickleError, match="batches.meta"):
        load_class_names(tmp_path)
    assert not marker.exists()


def test_codecs_encode_only_latin1(tmp_path: Path) -> None:
    """Py3 protocol-2 pickles spell bytes as _codecs.encode(s, 'latin1'); other codecs are refused."""
    import codecs

    with open(tmp_path / "b", "wb") as f:
        pickle.dump({b"labels": _Exploit(codecs.encode, ("x", "rot13"))}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="rot13"):
        load_batch(tmp_path / "b")


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(b"\x80\x02}q\x01(U\x04data")  # truncated pickle
    with pytest.raises(pickle.UnpicklingError, match="not a readable CIFAR pickle"):
        load_batch(tmp_path / "b")


# -- splits and fake data ------------------------------------------------------


def test_load_split_missing_files_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as exc:
        load_split(tmp_path, train=True)
    msg = str(exc.value)
    assert "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}" in msg
    assert "dataset.data_dir=PATH" in msg and "data_batch_1" in msg


def test_load_split_partial_tree(tmp_path: Path) -> None:
    cdir = write_fake_cifar(tmp_path, n_train_per_class=1, n_test_per_class=1)
    (cdir / "data_batch_3").unlink()
    load_split(tmp_path, train=False)  # test split is still complete
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_split(tmp_path, train=True)


def test_label_out_of_range_for_meta(tmp_path: Path) -> None:
    cdir = write_fake_cifar(tmp_path, n_train_per_class=1, n_test_per_class=1, class_names=["a", "b"])
    write_batch(cdir / "test_batch", np.zeros((1, 32, 32, 3), np.uint8), [5])
    with pytest.raises(ValueError, match="out of range"):
        load_split(tmp_path, train=False)


def test_write_fake_cifar_tree_and_counts(tmp_path: Path) -> None:
    cdir = write_fake_cifar(tmp_path, n_train_per_class=3, n_test_per_class=2)
    assert cdir == tmp_path / "cifar-10-batches-py"
    assert sorted(p.name for p in cdir.iterdir()) == sorted([*TRAIN_FILES, *TEST_FILES, META_FILE])
    assert load_class_names(tmp_path) == CIFAR10_CLASSES
    x, y = load_split(tmp_path, train=True)
    assert x.shape == (30, 32, 32, 3) and np.bincount(y).tolist() == [3] * 10
    x, y = load_split(tmp_path, train=False)
    assert x.shape == (20, 32, 32, 3) and np.bincount(y).tolist() == [2] * 10
    # Also accepts the batches folder itself.
    assert load_split(cdir, train=False)[0].shape == (20, 32, 32, 3)


def test_write_fake_cifar_is_deterministic(tmp_path: Path) -> None:
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_fake_cifar(tmp_path / name, n_train_per_class=2, n_test_per_class=1, seed=seed)
    a, b, c = (load_split(tmp_path / n, train=True) for n in "abc")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_fake_cifar_is_learnable(tmp_path: Path) -> None:
    """Nearest class-mean colour on held-out images must be perfect: the classes carry signal."""
    names = ["x", "y", "z", "w"]
    write_fake_cifar(tmp_path, n_train_per_class=5, n_test_per_class=5, seed=3, class_names=names)
    assert load_class_names(tmp_path) == names
    xtr, ytr = load_split(tmp_path, train=True)
    xte, yte = load_split(tmp_path, train=False)
    means = np.stack([xtr[ytr == c].reshape(-1, 3).mean(0) for c in range(len(names))])
    feats = xte.reshape(len(xte), -1, 3).mean(1)
    pred = np.argmin(((feats[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == yte).all()


# -- real shared subset --------------------------------------------------------

real = pytest.mark.skipif(
    not (REAL_ROOT / CIFAR10_DIRNAME).is_dir(), reason=f"real CIFAR-10 subset not found at {REAL_ROOT}"
)


@real
def test_real_subset_counts_and_names() -> None:
    assert load_class_names(REAL_ROOT) == CIFAR10_CLASSES
    x, y = load_split(REAL_ROOT, train=True)
    assert x.shape == (4660, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y, minlength=10).tolist() == [479, 479, 444, 448, 489, 435, 464, 477, 481, 464]
    x, y = load_split(REAL_ROOT, train=False)
    assert x.shape == (846, 32, 32, 3) and x.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == [83, 70, 88, 84, 76, 79, 97, 87, 88, 94]


@real
@pytest.mark.parametrize("name", ["data_batch_1", "test_batch"])
def test_real_subset_matches_independent_decode(name: str) -> None:
    path = REAL_ROOT / CIFAR10_DIRNAME / name
    with open(path, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy>=2 may warn about the numpy.core path
        raw = pickle.load(f, encoding="latin1")  # trusted, read-only reference data
    expected = raw["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    images, labels = load_batch(path)
    np.testing.assert_array_equal(images, expected)
    assert labels.tolist() == list(raw["labels"])
    # Natural images: neighbouring pixels correlate far more along rows/columns than
    # across the wrong axis, so a wrong reshape would not be this smooth.
    img = images.astype(np.int16)
    assert np.abs(np.diff(img, axis=2)).mean() < 0.5 * np.abs(img[:, :, :16] - img[:, :, 16:]).mean()


# -- labels and names that would be silently wrong, or fail without naming the file --------------


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ([1, 2.5], r"label #1 is 2\.5 \(float\)"),  # np.asarray(..., int64) would make it 2
        ([3.0, 1], r"label #0 is 3\.0 \(float\)"),
        (np.array([0.7, 1.2]), r"label #0 is 0\.7"),
        ([True, 0], r"label #0 is True \(bool\)"),
        (["1", 0], r"label #0 is '1' \(str\)"),
        ([0, 10**30], r"label 10{30} is not a class index"),  # OverflowError without the path before
        ([-(2**70), 0], r"label -\d+ is not a class index"),
    ],
)
def test_labels_that_are_not_integer_class_indices_are_refused_with_the_path(tmp_path: Path, labels, match) -> None:
    from litvision.utils.errors import DataError

    path = tmp_path / "odd_labels_batch"
    _raw_batch(path, np.zeros((2, 3072), np.uint8), labels)
    with pytest.raises(DataError, match=match) as exc:
        load_batch(path)
    assert str(path) in str(exc.value)


def test_numpy_integer_labels_are_accepted(tmp_path: Path) -> None:
    _raw_batch(tmp_path / "b", np.zeros((3, 3072), np.uint8), np.array([4, 0, 9], dtype=np.uint8))
    assert load_batch(tmp_path / "b")[1].tolist() == [4, 0, 9]


def test_class_names_that_are_not_utf8_are_refused_with_the_path(tmp_path: Path) -> None:
    from litvision.utils.errors import DataError

    cdir = write_fake_cifar(tmp_path, n_train_per_class=1, n_test_per_class=1)
    write_meta(cdir / META_FILE, ["airplane", b"caf\xe9", *CIFAR10_CLASSES[2:]])  # latin-1, not UTF-8
    with pytest.raises(DataError, match=r"class name #1 b'caf\\xe9' is not UTF-8") as exc:
        load_class_names(tmp_path)
    assert str(cdir / META_FILE) in str(exc.value)


def test_file_problems_are_user_errors_that_keep_their_builtin_types(tmp_path: Path) -> None:
    """Entry scripts print DataError/MissingDataError as one line; ``except ValueError`` etc. still work."""
    from litvision.utils.errors import DataError, MissingDataError

    with pytest.raises(MissingDataError):
        load_split(tmp_path, train=True)
    (tmp_path / "garbage").write_bytes(b"\x80\x02}q\x01(U\x04data")
    with pytest.raises(DataError) as exc:
        load_batch(tmp_path / "garbage")
    assert isinstance(exc.value, pickle.UnpicklingError)
    cdir = write_fake_cifar(tmp_path / "evil", n_train_per_class=1, n_test_per_class=1)
    with open(cdir / "data_batch_1", "wb") as f:
        pickle.dump(
            {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_payload("open", tmp_path / "x")]}, f, protocol=2
        )
    with pytest.raises(DataError) as exc:
        load_batch(cdir / "data_batch_1")
    assert isinstance(exc.value, UnsafePickleError)


def test_label_out_of_range_names_the_batch_file(tmp_path: Path) -> None:
    cdir = write_fake_cifar(tmp_path, n_train_per_class=1, n_test_per_class=1, class_names=["a", "b"])
    write_batch(cdir / "data_batch_4", np.zeros((1, 32, 32, 3), np.uint8), [7])
    with pytest.raises(ValueError, match="data_batch_4: label 7 out of range"):
        load_split(tmp_path, train=True)
