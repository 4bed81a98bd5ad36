"""Write one planned shard: the original image bytes, label and id of each readable sample.

Runs in a worker process of ``prepare_shards``. The tar goes to a temp file beside its final
name and is renamed only when complete and fsynced (:func:`litvision.utils.atomic_write.write_atomic`);
the shard's record (count, size, SHA-256, per-class counts, files left out) is written after
it. A killed run therefore leaves whole shards with records, or temp files that the next run
deletes: never a half shard that looks finished. Its workers die with it
(:func:`init_writer_process`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import IO, Any

from litvision.datamodules.readers.decode import (
    DEFAULT_MAX_IMAGE_PIXELS,
    BadImageError,
    check_image_size,
    decode_image,
    is_truncated_jpeg,
    jpeg_header,
)
from litvision.datamodules.shards.manifest import PARTS_DIRNAME, image_field
from litvision.datamodules.shards.ownership import hold_writers_lock, run_is_alive
from litvision.datamodules.shards.write_plan import ShardTask
from litvision.utils.atomic_write import write_atomic, write_json_atomic
from litvision.utils.errors import DataError
from litvision.utils.names import escape_name, escape_surrogates
from litvision.utils.parent_death import ParentWatch, die_with_parent, exit_with

VERIFY_MODES = ("decode", "header", "none")
TAR_MTIME = 0  # fixed member timestamps: the same plan gives byte-identical shards (same SHA-256)

# set in a worker process by init_writer_process: its parent, checked between samples
_parent: ParentWatch | None = None
_writers_lock: int | None = None


def init_writer_process(out_dir: str, owner_pid: int) -> None:
    """Initializer of a prepare_shards worker: it dies with its parent and never outlives the run.

    It ends the moment the run's process ``owner_pid`` does (:func:`exit_with`; under forkserver
    its parent is the fork server) or its own parent does (Linux parent-death signal; checked
    between samples elsewhere); it holds the writers lock, so no new run starts writing while it
    lives; and it exits now if the run is already over (the owner died before the watch was set,
    or a new run holds the folder).
    """
    global _parent, _writers_lock
    watch = ParentWatch()
    die_with_parent()
    exit_with(owner_pid)
    _writers_lock = hold_writers_lock(Path(out_dir))
    if watch.gone() or not run_is_alive(Path(out_dir), owner_pid):
        os._exit(1)
    _parent = watch


def _stop_if_orphaned() -> None:
    """The portable fallback of the parent-death signal: a worker whose parent is gone writes nothing more."""
    if _parent is not None and _parent.gone():
        os._exit(1)


def unreadable_reason(data: bytes, verify: str, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> str | None:
    """Why the file would be skipped by the file DataModules, or None if it is fine.

    ``decode`` runs the training decoder (:func:`~litvision.datamodules.readers.decode.decode_image`,
    with the dataset's pixel budget ``max_pixels``): the very verdict a file DataModule
    reaches. ``header`` only parses the JPEG markers, looks for the end-of-image marker and
    checks the size (:func:`~litvision.datamodules.readers.decode.check_image_size`): empty, truncated
    and oversized files, microseconds per file; non-JPEG files are still decoded. ``none``
    writes every file as is (the shard DataModule then applies ``on_bad_image`` and the same
    size check when it decodes).
    """
    if verify == "none":
        return None
    if not data:
        return "empty file (0 bytes)"
    try:
        if verify == "header":
            header = jpeg_header(data)
            if header is not None:
                if is_truncated_jpeg(data, header):
                    return "truncated JPEG (no end-of-image marker after the scan data)"
                check_image_size(data, max_pixels, header)
                return None
        decode_image(data, max_pixels=max_pixels)
    except BadImageError as e:
        return str(e)
    return None


class _HashingWriter:
    """File-like wrapper computing the SHA-256 of everything written (the tar is written once)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def record_path(out_dir: Path, shard: str) -> Path:
    return out_dir / PARTS_DIRNAME / f"{shard}.json"


def read_record(out_dir: Path, task: ShardTask) -> dict[str, Any] | None:
    """The record of a shard already written for exactly this plan, or None (write it again)."""
    path = record_path(out_dir, task.name)
    try:
        record = json.loads(path.read_text())
        size = (out_dir / task.name).stat().st_size
    except (OSError, ValueError):
        return None
    if record.get("digest") != task.digest or record.get("bytes") != size:
        return None
    return record


def write_shard(
    task: ShardTask,
    out_dir: str,
    on_bad_image: str,
    verify: str,
    max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> dict[str, Any]:
    """Write ``task``'s shard and its record into ``out_dir``; return the record."""
    from webdataset import TarWriter

    out = Path(out_dir)
    labels: Counter[int] = Counter()
    bad_files: list[dict[str, str]] = []
    source_bytes = 0
    hashing: _HashingWriter | None = None

    def write(handle: IO[bytes]) -> None:
        nonlocal hashing, source_bytes
        hashing = _HashingWriter(handle)
        with TarWriter(hashing, encoder=False, compress=False, mtime=TAR_MTIME) as tar:
            for offset, member in enumerate(task.members):
                _stop_if_orphaned()
                try:
                    with open(member.path, "rb") as f:
                        data = f.read()
                    reason = unreadable_reason(data, verify, max_pixels)
                except OSError as e:  # vanished since indexing, permissions, I/O error
                    reason = f"cannot read ({e})"
                if reason is not None:
                    if on_bad_image == "raise":
                        raise DataError(
                            f"{member.path}: {reason}. Remove or replace the file, or set dataset.on_bad_image=skip "
                            "to leave unreadable images out of the shards (they are listed in the manifest)."
                        )
                    bad_files.append({"id": escape_name(member.id), "reason": escape_surrogates(reason)})
                    continue
                key = f"{task.first_key + offset:08d}"
                tar.write(
                    {
                        "__key__": key,
                        image_field(member.id): data,
                        "cls": str(member.label).encode(),
                        "id.txt": member.id.encode("utf-8", "surrogateescape"),
                    }
                )
                labels[member.label] += 1
                source_bytes += len(data)
        _stop_if_orphaned()  # last chance before the rename makes the shard visible

    write_atomic(out / task.name, write)
    assert hashing is not None  # set by write(), which write_atomic has run
    record = {
        "name": task.name,
        "split": task.split,
        "index": task.index,
        "digest": task.digest,
        "count": sum(labels.values()),
        "bytes": hashing.bytes,
        "sha256": hashing.sha256.hexdigest(),
        "source_bytes": source_bytes,
        "class_counts": {str(label): n for label, n in sorted(labels.items())},
        "bad_files": bad_files,
    }
    write_json_atomic(record_path(out, task.name), record)
    return record
