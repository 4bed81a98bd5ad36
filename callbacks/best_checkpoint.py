"""The best checkpoint under a name that does not change: ``<dirpath>/best.ckpt`` beside ``best_epochNNN.ckpt``."""

from __future__ import annotations

import os
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from litvision.utils.atomic_write import link_atomic


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, plus ``best_name`` (``best.ckpt``): the current best checkpoint.

    The epoch-numbered file says which epoch won; the fixed name is what a script or a README
    can point at (``eval.py ckpt_path=<run dir>/checkpoints/best.ckpt``) without knowing it.
    ``best.ckpt`` is a hard link to the same file (a copy where links are impossible), replaced
    in one rename whenever a new best is saved, before the previous best is deleted: it is
    never missing or half-written. Lightning's ``save_last="link"`` only links ``last.ckpt``
    (and removes the old link before making the new one).
    """

    def __init__(self, *args: Any, best_name: str | None = "best", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.best_name = best_name

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        if self.best_name and self.monitor and filepath == self.best_model_path and trainer.is_global_zero:
            alias = os.path.join(os.path.dirname(filepath), self.best_name + self.FILE_EXTENSION)
            if os.path.abspath(alias) != os.path.abspath(filepath):
                link_atomic(filepath, alias)
