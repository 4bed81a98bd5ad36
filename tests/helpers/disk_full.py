"""Test-only callback: the ``nth`` atomic write of ``name`` hits a full disk (a real ENOSPC from the kernel).

``+callbacks.disk_full._target_=tests.helpers.disk_full.DiskFullAt +callbacks.disk_full.name=last.ckpt
+callbacks.disk_full.nth=2``: from ``setup`` on, the ``nth`` temp file that
:func:`litvision.utils.atomic_write.write_atomic` opens for ``name`` (``.<name>.*.tmp``) is
swapped, at ``os.fdopen``, for a handle on ``/dev/full``, whose writes fail with
``OSError(ENOSPC)`` exactly as a full filesystem's do. Everything above the OS call (torch.save,
json, the atomic writer, Lightning) runs unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L

_REAL_FDOPEN = os.fdopen


def fill_disk_at(name: str, nth: int = 1) -> None:
    """Patch ``os.fdopen`` so that the ``nth`` temp file of ``name`` writes to /dev/full."""
    seen = 0

    def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        nonlocal seen
        try:
            target = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            target = ""
        if "w" in mode and target.startswith(f".{name}.") and target.endswith(".tmp"):
            seen += 1
            if seen == nth:
                os.close(fd)
                return open("/dev/full", mode)  # the caller closes it
        return _REAL_FDOPEN(fd, mode, *args, **kwargs)

    os.fdopen = fdopen


class DiskFullAt(L.Callback):
    def __init__(self, name: str = "last.ckpt", nth: int = 1) -> None:
        self.name, self.nth = name, nth

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        fill_disk_at(self.name, self.nth)
