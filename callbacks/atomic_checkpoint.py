"""A CheckpointIO plugin whose writes are atomic and durable on local/shared filesystems.

Why not Lightning's ``TorchCheckpointIO`` as is (checked in Lightning 2.6): for a local path
it writes through an fsspec transaction whose temp file is ``tempfile.mkstemp()`` in the
*system* temp dir, then ``shutil.move``s it into place. When /tmp and the checkpoint dir
are different filesystems (the usual cluster layout: local /tmp, checkpoints on NFS or
Lustre) that move is a copy, and a kill or preemption during the copy leaves a truncated
``last.ckpt`` that ``ckpt_path=last`` then cannot load. Nothing is fsynced either, so a node
crash can leave an empty file after the rename.

Here the temp file lives in the destination folder (same filesystem, so ``os.replace`` is
an atomic rename), is fsynced before the rename, and the folder is fsynced after it. A
reader, or a resumed run, sees the old checkpoint or the new one, never half of one.
Remote URLs (``s3://``...) keep Lightning's own path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from fsspec.utils import get_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

TMP_SUFFIX = ".tmp"  # not ".ckpt": ModelCheckpoint never mistakes a leftover for a checkpoint


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` via a same-folder temp file, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint gets normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    # a save of this file that was killed earlier left its temp file behind: it is garbage now
    for stale in path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Small text files (run id, sweep summary, job status) the same way: whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (the directory entry); not possible on every OS/filesystem."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with an atomic, fsynced local save (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or get_protocol(str(path)) != "file":
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        atomic_torch_save(checkpoint, str(path).removeprefix("file://"))
