"""Property tests (Hypothesis) for what the shard reader parses from outside input: manifest
entries and whole manifests, shard names, tar member names, labels, and shard bytes.

Arbitrary input gives either a valid result (checked against the format's invariants) or one
DataError, never another exception."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import shlex
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from litvision.datamodules.shards.manifest import (
    FORMAT,
    MAX_SHARD_BYTES,
    MIN_SAMPLE_BYTES,
    ShardEntry,
    check_manifest,
    is_shard_name,
    parse_label,
    parse_member_name,
    read_manifest,
    shard_entry,
    shard_name,
    shard_url,
)
from litvision.utils.errors import DataError, UserError

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
names = (
    st.builds(shard_name, st.sampled_from(["train", "val", "holdout"]), st.integers(0, 10**7))
    | st.text(max_size=40)
    | st.builds(
        lambda n, s: n + s,
        st.sampled_from(["val-000000.tar", "/etc/", "../", "val-"]),
        st.text(alphabet=";$()`'\"/.\n -|&0123456789", max_size=12),
    )
)
counts = st.integers(-3, 10**13) | st.integers() | json_scalars
digests = st.text(alphabet="0123456789abcdefABCDEF", min_size=63, max_size=65) | json_scalars


@st.composite
def entries(draw):
    """Shard entries: each field mostly valid, else anything, sometimes missing; sometimes any JSON value."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)

    def field(valid, anything):
        return draw(valid if draw(st.integers(0, 3)) else anything)

    size = field(st.integers(1024, 10**9), counts)
    raw = {
        "name": field(st.builds(shard_name, st.just("val"), st.integers(0, 10**7)), names),
        "count": field(st.integers(0, size // MIN_SAMPLE_BYTES if type(size) is int and size > 0 else 5), counts),
        "bytes": size,
        "sha256": field(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), digests),
    }
    for key in draw(st.lists(st.sampled_from(sorted(raw)), max_size=1)):
        raw.pop(key, None)
    return raw


@FAST
@given(entries())
def test_a_shard_entry_is_valid_or_one_data_error(raw):
    try:
        entry = shard_entry(raw, "val", "manifest.json", "splits.val.shards[0]")
    except DataError as e:
        assert "\n" not in str(e) and "splits.val.shards[0]" in str(e)
        return
    assert isinstance(entry, ShardEntry) and is_shard_name(entry.name, "val")
    assert 1024 <= entry.bytes <= MAX_SHARD_BYTES and 0 <= entry.count <= entry.bytes // MIN_SAMPLE_BYTES
    assert type(entry.count) is int and type(entry.bytes) is int and len(entry.sha256) == 64


def valid_manifest() -> dict:
    return {
        "format": FORMAT,
        "classes": ["a", "b"],
        "class_names": ["A", "B"],
        "splits": {
            "train": {
                "count": 5,
                "class_counts": [2, 3],
                "bad_files": [],
                "shards": [{"name": "train-000000.tar", "count": 5, "bytes": 20480, "sha256": "0" * 64}],
            },
            "val": {
                "count": 3,
                "class_counts": [1, 2],
                "bad_files": [{"id": "x", "reason": "empty"}],
                "shards": [
                    {"name": "val-000000.tar", "count": 2, "bytes": 10240, "sha256": "1" * 64},
                    {"name": "val-000001.tar", "count": 1, "bytes": 10240, "sha256": "2" * 64},
                ],
            },
        },
        "default_splits": {"val": "val", "test": "val"},
    }


PATHS = [
    ("format",),
    ("classes",),
    ("classes", 0),
    ("class_names",),
    ("splits",),
    ("splits", "val"),
    ("splits", "val", "count"),
    ("splits", "val", "class_counts"),
    ("splits", "val", "class_counts", 1),
    ("splits", "val", "bad_files"),
    ("splits", "val", "shards"),
    ("splits", "val", "shards", 1),
    ("splits", "val", "shards", 1, "name"),
    ("splits", "val", "shards", 1, "count"),
    ("splits", "train", "shards", 0, "bytes"),
    ("default_splits",),
    ("default_splits", "test"),
]


@st.composite
def manifests(draw):
    """A valid manifest with one value replaced by anything, or any JSON value at all."""
    if draw(st.integers(0, 5)) == 0:
        return draw(json_values)
    data = copy.deepcopy(valid_manifest())
    if draw(st.booleans()):
        *parents, last = draw(st.sampled_from(PATHS))
        node = data
        for key in parents:
            node = node[key]
        node[last] = draw(json_values | counts | names)
    return data


@FAST
@given(manifests())
def test_a_manifest_is_valid_or_one_data_error(data):
    try:
        checked = check_manifest(data, "m.json")
    except DataError as e:
        assert "\n" not in str(e) and str(e).startswith("m.json: ")
        return
    assert len(checked["classes"]) == len(checked["class_names"])
    for split, info in checked["splits"].items():
        shards = [shard_entry(raw, split, "m", "e") for raw in info["shards"]]
        assert sum(s.count for s in shards) == info["count"] == sum(info["class_counts"])
        assert len({s.name for s in shards}) == len(shards)


@FAST
@given(
    st.binary(max_size=300)
    | st.text(max_size=200).map(str.encode)
    | st.builds(lambda d: json.dumps(d).encode(), manifests())
)
def test_reading_any_manifest_file_is_valid_or_one_user_error(raw):
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "manifest.json"), "wb") as f:
            f.write(raw)
        try:
            read_manifest(folder)
        except UserError as e:  # DataError, or MissingDataError for an empty file
            assert "\n" not in str(e)


@FAST
@given(
    st.text(max_size=30)
    | st.builds(
        lambda k, f: f"{k}.{f}",
        st.integers(0, 10**12).map("{:08d}".format) | st.integers(-5, 10**13).map(str) | st.text(max_size=9),
        st.sampled_from(["jpg", "cls", "id.txt", "png", "JPG", "jpg/x", "", "id"]),
    )
)
def test_a_member_name_is_a_key_and_field_or_one_data_error(name):
    try:
        key, field = parse_member_name(name, "s.tar")
    except DataError as e:
        assert "\n" not in str(e) and "s.tar" in str(e)
        return
    assert f"{key}.{field}" == name and f"{int(key):08d}" == key and "/" not in name and ".." not in name


@FAST
@given(st.binary(max_size=12) | st.integers(-10, 10**12).map(lambda n: str(n).encode()), st.integers(1, 1000))
def test_a_label_is_a_class_index_or_one_data_error(data, num_classes):
    try:
        label = parse_label(data, num_classes, "s.tar", "00000000.cls")
    except DataError as e:
        assert "\n" not in str(e) and "00000000.cls" in str(e)
        return
    assert 0 <= label < num_classes and str(label).encode() == data


@FAST
@given(names, st.sampled_from(["s3://bucket/set", "s3://my bucket/set/", "/data/shards", "gs://b/s", "pipe:cat /d"]))
def test_a_shard_url_stays_inside_its_location_or_is_one_data_error(name, location):
    try:
        url = shard_url(location, name)
    except DataError as e:
        assert "\n" not in str(e)
        return
    assert is_shard_name(name)
    if location.startswith("s3://"):  # one quoted argument: nothing else reaches the shell
        assert shlex.split(url[len("pipe:") :]) == ["aws", "s3", "cp", f"{location.rstrip('/')}/{name}", "-"]
    elif location.startswith("pipe:"):
        assert shlex.split(url[len("pipe:") :]) == ["cat", f"/d/{name}"]
    else:
        assert os.path.dirname(url) == location.rstrip("/") and os.path.basename(url) == name


def tiny_shard() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for key in range(3):
            for field, data in (
                ("jpg", b"\xff\xd8" + bytes(range(50)) + b"\xff\xd9"),
                ("cls", str(key % 2).encode()),
                ("id.txt", f"c/{key}.jpg".encode()),
            ):
                info = tarfile.TarInfo(f"{key:08d}.{field}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


TINY = tiny_shard()


@st.composite
def spoiled_shards(draw):
    """The tiny shard with some bytes changed, cut, or extended."""
    raw = bytearray(TINY)
    for _ in range(draw(st.integers(0, 4))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(raw)) | st.just(len(raw)))
    return bytes(raw[:cut]) + draw(st.binary(max_size=8))


@pytest.mark.parametrize("verify", ["none", "sha256"])
def test_reading_any_shard_bytes_gives_samples_or_one_data_error(verify):
    pytest.importorskip("webdataset")
    from litvision.datamodules.shards.reader import read_shard

    @FAST
    @given(spoiled_shards(), st.integers(0, 4))
    def check(raw, count):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "val-000000.tar")
            with open(path, "wb") as f:
                f.write(raw)
            entry = ShardEntry("val-000000.tar", count, len(TINY), hashlib.sha256(TINY).hexdigest())
            try:
                samples = list(read_shard(path, entry, num_classes=2, verify=verify))
            except DataError as e:
                assert "\n" not in str(e) and "val-000000.tar" in str(e)
                return
            assert len(samples) == count and all(s["cls"] in (0, 1) for s in samples)
            if verify == "sha256":
                assert raw == TINY and count == 3

    check()
