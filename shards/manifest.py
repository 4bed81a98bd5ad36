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
"""

from __future__ import annotations

import json
import os
from typing import Any

from litvision.utils.errors import DataError, MissingDataError

FORMAT = "litvision-shards/1"
MANIFEST_NAME = "manifest.json"
PARTS_DIRNAME = ".parts"  # per-shard records written as shards complete (resume, manifest)
# image fields a sample may carry: the original file's extension, ".jpeg" spelled "jpg"
IMAGE_FIELDS = ("jpg", "png", "webp", "bmp", "tif", "tiff", "gif")


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


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
    """
    if location.startswith("s3://"):
        return f"pipe:aws s3 cp {location.rstrip('/')}/{name} -"
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
                raw = handle.read()
        else:
            with open(url, "rb") as handle:
                raw = handle.read()
    except FileNotFoundError as e:
        raise MissingDataError(f"no shard set at dataset.shards={location} ({url} not found); {hint}") from e
    except OSError as e:
        raise MissingDataError(f"cannot read {url} ({e}); check dataset.shards, or {hint}") from e
    if not raw:  # a pipe/curl that failed prints to stderr and returns nothing
        raise MissingDataError(f"cannot read {url} (empty answer); check dataset.shards and your credentials")
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        raise DataError(f"{url} is not valid JSON ({e}); re-run prepare_shards.py to rewrite it") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(
            f"{url} is not a litvision shard manifest (format {manifest.get('format') if isinstance(manifest, dict) else None!r}, "
            f"expected {FORMAT!r}); {hint}"
        )
    return manifest
