"""Class names from outside input: class-folder names as the file system lists them, CIFAR's
``batches.meta`` label names. Arbitrary input gives class names or one DataError, and the names
every writer uses (metric keys, CSV cells) are valid UTF-8 that read back to the folder.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from litvision.datamodules.readers.cifar_pickle import CIFAR10_DIRNAME, META_FILE, load_class_names
from litvision.datamodules.readers.file_index import scan_class_folders
from litvision.lightning_modules.metrics.collections import unique_metric_names
from litvision.utils.errors import DataError
from litvision.utils.names import escape_name, name_bytes

# a folder name: 1..40 bytes, no '/' or NUL, not '.'/'..', not hidden (hidden folders are not classes)
FOLDER = st.binary(min_size=1, max_size=40).filter(
    lambda b: b"/" not in b and b"\0" not in b and not b.startswith(b".")
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(FOLDER, min_size=1, max_size=5, unique=True),
    st.binary(min_size=1, max_size=20).filter(lambda b: b"/" not in b and b"\0" not in b and not b.startswith(b".")),
)
@example([b"caf\xe9", b"=SUM(1+1)", b"tab\there", b"back\\slash", b"#x"], b"new\nline\xff")
def test_class_folders_of_any_name_index_and_write_back_to_the_same_folders(folders: list[bytes], stem: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        split = os.path.join(os.fsencode(tmp), b"train")
        for folder in folders:
            os.makedirs(os.path.join(split, folder))
            with open(os.path.join(split, folder, stem + b".png"), "wb") as handle:
                handle.write(b"not decoded while indexing")
        index, _ = scan_class_folders(os.fsdecode(split), progress=False)
        assert sorted(name_bytes(escape_name(c)) for c in index.classes) == sorted(folders)
        for path, label in zip(index.names(), index.labels.tolist(), strict=True):
            assert os.path.isfile(os.path.join(split, name_bytes(escape_name(path))))
            assert os.fsencode(path).split(b"/")[0] == os.fsencode(index.classes[label])
        keys = unique_metric_names(index.classes)
        assert len(set(keys)) == len(keys)
        for key in keys:
            key.encode("utf-8")  # a metric name every logger can write
            assert "/" not in key


def _meta(root: Path, label_names: object) -> Path:
    folder = root / CIFAR10_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / META_FILE, "wb") as handle:
        pickle.dump({b"label_names": label_names, b"num_cases_per_batch": 10000}, handle, protocol=2)
    return root


LABEL_NAME = st.one_of(
    st.binary(max_size=12),
    st.text(st.characters(exclude_categories=()), max_size=12),
    st.integers(),
    st.floats(allow_nan=True),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        st.lists(LABEL_NAME, max_size=6), LABEL_NAME, st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
    )
)
@example([b"airplane", "caf\udce9", b"caf\xe9"])
@example([])
def test_cifar_label_names_give_class_names_or_one_data_error(label_names: object) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = _meta(Path(tmp), label_names)
        try:
            names = load_class_names(root)
        except DataError as e:
            assert "\n" not in str(e)
            return
    assert isinstance(label_names, list) and len(names) == len(label_names)
    assert all(isinstance(name, str) for name in names)
    for name in names:
        escape_name(name).encode("utf-8")
    for key in unique_metric_names(names):
        key.encode("utf-8")
