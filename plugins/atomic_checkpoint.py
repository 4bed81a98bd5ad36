"""A CheckpointIO plugin whose writes are atomic and durable on local/shared filesystems.

Why not Lightning's ``TorchCheckpointIO`` as is (checked in Lightning 2.6): for a local path
it writes through an fsspec transaction whose temp file is ``tempfile.mkstemp()`` in the
*system* temp dir, then ``shutil.move``s it into place. When /tmp and the checkpoint dir
are different filesystems (the usual cluster layout: local /tmp, checkpoints on NFS or
Lustre) that move is a copy, and a kill or preemption during the copy leaves a truncated
``last.ckpt`` that ``ckpt_path=last`` then cannot load. Nothing is fsynced either, so a node
crash can leave an empty file after the rename.

Here the temp file lives in the destination folder (same filesystem, so ``os.replace`` is
an atomic rename), is fsynced before the rename, and the folder is fsynced after it
(:mod:`litvision.utils.checkpoint_io`, :mod:`litvision.utils.atomic_write`). Remote URLs (``s3://``...) keep Lightning's own path.
"""

from __future__ import annotations

from typing import Any

from fsspec.utils import get_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from litvision.utils.checkpoint_io import atomic_torch_save, load_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with an atomic, fsynced local save (see the module docstring).

    Local checkpoints are read with ``weights_only=True`` whatever the caller asks
    (:func:`litvision.utils.checkpoint_io.load_checkpoint`): resuming or testing a
    checkpoint never runs code from it, and an unsafe one is refused with one line.
    """

    def load_checkpoint(self, path: Any, map_location: Any = "cpu", weights_only: bool | None = None) -> dict[str, Any]:
        if get_protocol(str(path)) != "file":
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return load_checkpoint(str(path).removeprefix("file://"), map_location=map_location)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or get_protocol(str(path)) != "file":
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        # out of disk space: one DiskFullError line (launch/user_errors.py), not Lightning's traceback
        atomic_torch_save(checkpoint, str(path).removeprefix("file://"), then="resume with ckpt_path=last")
