"""The shard set's layout and manifest: names, where a shard lives, and reading ``manifest.json``.

A shard set is a folder (or an object-store prefix) holding ``<split>-NNNNNN.tar`` files and
``manifest.json``::

    {"format": "litvision-shards/1", "classes": [...folder names...], "class_names": [...readable...],
     "splits": {"train": {"count": N, "class_counts": [...], "bad_files": [{"id", "reason"}],
                          "shards": [{"name", "count", "bytes", "sha256"}, ...]}, "val": {...}},
     "default_splits": {"val": "val", "test": "val"}, "source": {...}, "samples_per_shard": ...}

Each sample in a shard is ``<key>.<image ext>`` (the original file's bytes), ``<key>.cls``
(the label, decimal text) and ``<key>.id.txt`` (the file's path relative to the dataset
root); ``<key>`` is the sample's 8-digit position in its split. Class names and the ids in
``bad_files`` are escaped as in every file litvision writes (:mod:`litvision.utils.names`).

Everything in a manifest and in a shard is outside input (shard sets are copied, shared and
downloaded): :func:`check_manifest` checks every field the reader uses before anything is
opened or allocated from it, shard names must be exactly the names :func:`shard_name` writes
(no ``/``, ``..`` or shell characters: they become paths and ``pipe:`` commands), and
:func:`parse_member_name` / :func:`parse_label` check each tar member as it streams. Each
refusal is one :class:`~litvision.utils.errors.DataError` naming the entry.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from typing import Any, TypeGuard

from litvision.utils.errors import ConfigError, DataError, MissingDataError

FORMAT = "litvision-shards/1"
MANIFEST_NAME = "manifest.json"
PARTS_DIRNAME = ".parts"  # per-shard records written as shards complete (resume, manifest)
# image fields a sample may carry: the original file's extension, ".jpeg" spelled "jpg"
IMAGE_FIELDS = ("jpg", "png", "webp", "bmp", "tif", "tiff", "gif")
SPLIT_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")  # train, val, test, holdout: also part of the shard names
# (patterns used with fullmatch) the names shard_name() writes; is_shard_name also checks the round
# trip, so no other spelling of an index passes
SHARD_NAME = re.compile(r"(?P<split>[A-Za-z0-9_]{1,64})-(?P<index>[0-9]{6,12})\.tar")
# tar members: "<key>.<field>", key = the writer's f"{position:08d}", field = cls, id.txt or the image's extension
MEMBER_NAME = re.compile(r"(?P<key>[0-9]{8,12})\.(?P<field>cls|id\.txt|[a-z0-9]{1,16})")
LABEL_TEXT = re.compile(rb"0|[1-9][0-9]{0,8}")  # what the writer writes: str(label), ASCII decimal
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Bounds on manifest numbers, so nothing is allocated or planned from an absurd one. A sample is at
# least 3 tar members of a 512-byte header each; a shard larger than 64 GiB (prepare_shards.py writes
# ~100 MB) or a split of more than 2^28 samples (19x ImageNet-21k) is refused, not planned.
MIN_SAMPLE_BYTES = 3 * 512
MAX_SHARD_BYTES = 64 << 30
MAX_SPLIT_SAMPLES = 1 << 28
MAX_CLASSES = 1 << 20
MAX_MANIFEST_BYTES = 256 << 20
REWRITE = "re-run prepare_shards.py to rewrite the shard set, or copy an intact one"


@dataclass(frozen=True)
class ShardEntry:
    """One checked entry of a split's ``shards`` list."""

    name: str
    count: int
    bytes: int
    sha256: str


def shard_name(split: str, index: int) -> str:
    if not SPLIT_NAME.fullmatch(split) or not 0 <= index < 10**12:
        raise ConfigError(f"cannot name a shard of split {split!r} (index {index}): split names are letters, digits, _")
    return f"{split}-{index:06d}.tar"


def is_shard_name(name: Any, split: str | None = None) -> TypeGuard[str]:
    """``name`` is exactly what :func:`shard_name` writes (for ``split``, if given)."""
    match = SHARD_NAME.fullmatch(name) if isinstance(name, str) else None
    return (
        match is not None
        and shard_name(match["split"], int(match["index"])) == name
        and (split is None or match["split"] == split)
    )


def parse_member_name(name: Any, shard: str = "") -> tuple[str, str]:
    """``(key, field)`` of tar member ``name`` (``00000012.jpg`` -> ``("00000012", "jpg")``)."""
    match = MEMBER_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None or f"{int(match['key']):08d}" != match["key"]:
        raise DataError(
            f"shard {shard}: member {_shown(name, 80)} is not a sample file <8-digit key>.<cls|id.txt|image extension> "
            f"as prepare_shards.py writes; {REWRITE}"
        )
    return match["key"], match["field"]


def parse_label(data: Any, num_classes: int, shard: str = "", member: str = "") -> int:
    """The class index in a ``.cls`` member: decimal text in [0, num_classes)."""
    if not isinstance(data, bytes) or not LABEL_TEXT.fullmatch(data) or int(data) >= num_classes:
        raise DataError(
            f"shard {shard}: member {member!r} holds label {_shown(data)}, not an integer in [0, {num_classes}) "
            f"(the manifest lists {num_classes} classes); {REWRITE}"
        )
    return int(data)


def image_field(relative_path: str) -> str:
    """The tar member extension for an image file: ``jpg`` for .jpg/.jpeg (any case), else its own."""
    ext = os.path.splitext(relative_path)[1].lower().lstrip(".")
    return "jpg" if ext in ("jpg", "jpeg", "") else ext


def is_remote(location: str) -> bool:
    """A URL (``https://``, ``gs://``, ``s3://``, ``pipe:``...) rather than a local folder."""
    return "://" in location or location.startswith("pipe:")


def shard_url(location: str, name: str) -> str:
    """What WebDataset's ``gopen`` opens for file ``name`` of the shard set at ``location``.

    WebDataset has no ``s3://`` handler; its documented way is a pipe through the AWS CLI,
    which is what an ``s3://`` location turns into (credentials as the CLI finds them).
    ``name`` must be the manifest's own name or a shard name (:func:`is_shard_name`): it is
    appended to a path, a URL or a shell command, so nothing else is accepted, and whatever
    goes into a ``pipe:`` command is quoted.
    """
    if name != MANIFEST_NAME and not is_shard_name(name):
        raise DataError(f"{name!r} is not a shard name <split>-NNNNNN.tar as prepare_shards.py writes; {REWRITE}")
    if location.startswith("s3://"):
        return f"pipe:aws s3 cp {shlex.quote(location.rstrip('/') + '/' + name)} -"
    if location.startswith("pipe:"):  # the user's own command prefix: only the name is appended
        return f"{location.rstrip('/')}/{shlex.quote(name)}"
    if is_remote(location):
        return f"{location.rstrip('/')}/{name}"
    return os.path.join(os.path.expanduser(location), name)


def read_manifest(location: str) -> dict[str, Any]:
    """The manifest of the shard set at ``location`` (local folder or URL), checked for format."""
    url = shard_url(location, MANIFEST_NAME)
    hint = f"write it with: python prepare_shards.py dataset=imagenet dataset.data_dir=TREE out={location}"
    try:
        if is_remote(location):
            from webdataset import gopen

            with gopen(url, "rb") as handle:
                raw = handle.read(MAX_MANIFEST_BYTES + 1)
        else:
            with open(url, "rb") as handle:
                raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError as e:
        raise MissingDataError(f"no shard set at dataset.shards={location} ({url} not found); {hint}") from e
    except OSError as e:
        raise MissingDataError(f"cannot read {url} ({e}); check dataset.shards, or {hint}") from e
    if not raw:  # a pipe/curl that failed prints to stderr and returns nothing
        raise MissingDataError(f"cannot read {url} (empty answer); check dataset.shards and your credentials")
    if len(raw) > MAX_MANIFEST_BYTES:
        raise DataError(f"{url} is larger than {MAX_MANIFEST_BYTES >> 20} MB: not a shard manifest; {hint}")
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        raise DataError(f"{url} is not valid JSON ({e}); re-run prepare_shards.py to rewrite it") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(
            f"{url} is not a litvision shard manifest (format {manifest.get('format') if isinstance(manifest, dict) else None!r}, "
            f"expected {FORMAT!r}); {hint}"
        )
    return check_manifest(manifest, url)


# ---- checking a manifest -----------------------------------------------------------------------


def _bad(source: str, where: str, problem: str) -> DataError:
    return DataError(f"{source}: {where} {problem}; {REWRITE}")


def _shown(value: Any, limit: int = 40) -> str:
    """A short, one-line rendering of an outside value for a message."""
    if isinstance(value, (str, bytes, float, bool, type(None))) or (isinstance(value, int) and abs(value) < 10**40):
        return repr(value[:limit] if isinstance(value, (str, bytes)) else value)
    return f"<{type(value).__name__}>"


def _count(value: Any, source: str, where: str, low: int = 0, high: int = MAX_SPLIT_SAMPLES) -> int:
    """An integer in [low, high] (JSON true/false and floats are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(source, where, f"is {_shown(value)}, not an integer in [{low}, {high}]")
    return value


def _strings(value: Any, source: str, where: str) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CLASSES or not all(isinstance(v, str) for v in value):
        raise _bad(source, where, f"must be a list of 1 to {MAX_CLASSES} strings")
    return value


def shard_entry(raw: Any, split: str, source: str, where: str) -> ShardEntry:
    """One ``splits.<split>.shards[i]`` entry, checked: its name, and counts that fit its size."""
    if not isinstance(raw, dict):
        raise _bad(source, where, f"is {type(raw).__name__}, not an object with name, count, bytes, sha256")
    name = raw.get("name")
    if not is_shard_name(name, split):
        raise _bad(
            source,
            f"{where}.name",
            f"{_shown(name, 80)} is not a shard name {split}-NNNNNN.tar (as "
            "prepare_shards.py writes: no '/', '..' or shell characters)",
        )
    size = _count(raw.get("bytes"), source, f"{where}.bytes ({name})", 1024, MAX_SHARD_BYTES)
    count = _count(raw.get("count"), source, f"{where}.count ({name})", 0, size // MIN_SAMPLE_BYTES)
    digest = raw.get("sha256")
    if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
        raise _bad(source, f"{where}.sha256 ({name})", "is not 64 lowercase hex digits")
    return ShardEntry(name, count, size, digest)


def split_entries(manifest: dict[str, Any], split: str, source: str = MANIFEST_NAME) -> list[ShardEntry]:
    """The checked shard entries of ``split`` (see :func:`check_manifest`)."""
    shards = manifest["splits"][split]["shards"]
    return [shard_entry(raw, split, source, f"splits.{split}.shards[{i}]") for i, raw in enumerate(shards)]


def check_manifest(manifest: Any, source: str = MANIFEST_NAME) -> dict[str, Any]:
    """``manifest`` if every field the reader uses is what prepare_shards.py writes, else one DataError
    naming the entry: classes, per-split counts that add up (shards, classes), shard names, sizes and
    digests. Counts are bounded by the shard sizes (:data:`MIN_SAMPLE_BYTES`), sizes and splits by
    fixed limits, so no count from a manifest sizes an allocation unchecked."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _bad(source, "format", f"is not {FORMAT!r}: not a litvision shard manifest")
    classes = _strings(manifest.get("classes"), source, "classes")
    names = _strings(manifest.get("class_names"), source, "class_names")
    if len(names) != len(classes):
        raise _bad(source, "class_names", f"lists {len(names)} names for {len(classes)} classes")
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise _bad(source, "splits", "must be an object of splits (train, val, ...)")
    for split, info in splits.items():
        if not isinstance(split, str) or not SPLIT_NAME.fullmatch(split):
            raise _bad(source, f"splits key {_shown(split)}", "is not a split name (letters, digits, _)")
        where = f"splits.{split}"
        if not isinstance(info, dict) or not isinstance(info.get("shards"), list):
            raise _bad(source, where, "must be an object with count, class_counts, bad_files and a shards list")
        entries = split_entries(manifest, split, source)
        if len({e.name for e in entries}) != len(entries):
            raise _bad(source, f"{where}.shards", "lists a shard twice")
        total = _count(info.get("count"), source, f"{where}.count")
        if sum(e.count for e in entries) != total:
            raise _bad(
                source,
                f"{where}.count",
                f"is {total}, but its shards' counts add up to {sum(e.count for e in entries)}",
            )
        class_counts = info.get("class_counts")
        if not isinstance(class_counts, list) or len(class_counts) != len(classes):
            raise _bad(source, f"{where}.class_counts", f"must list a count for each of the {len(classes)} classes")
        if sum(_count(n, source, f"{where}.class_counts[{c}]") for c, n in enumerate(class_counts)) != total:
            raise _bad(source, f"{where}.class_counts", f"do not add up to the split's count {total}")
        if not isinstance(info.get("bad_files", []), list):
            raise _bad(source, f"{where}.bad_files", "must be a list")
    defaults = manifest.get("default_splits", {})
    if not isinstance(defaults, dict) or not all(isinstance(v, str) and v in splits for v in defaults.values()):
        raise _bad(source, "default_splits", "must map val/test to splits of the manifest")
    return manifest
